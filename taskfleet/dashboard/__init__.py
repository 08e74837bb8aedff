"""The web dashboard: queues, pools, workers, dead letters and tasks, in a browser.

``taskfleet dashboard`` serves it for one Redis; the operator serves it for every
TaskQueue and WorkerPool it watches. Read-only unless started with actions enabled,
and then every action needs the token and a confirmation.
"""

from .server import AccessSettings, build_app, serve
from .sources import DashboardSource, PoolView, QueueSource, RedisSource

__all__ = ["AccessSettings", "DashboardSource", "PoolView", "QueueSource", "RedisSource",
           "build_app", "serve"]

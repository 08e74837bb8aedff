"""Celery on Redis (kombu's Redis transport, kombu 5.x), read as Celery itself lays it out.

Checked against kombu 5.7.0 (``kombu/transport/redis.py``) and Celery 5.7.0:

- A queue is a list named after it, plus one sub-list per priority step,
  ``<queue>\\x06\\x16<step>`` (``Channel._q_for_pri``, ``Channel.sep``; step 0 is the
  bare name; ``PRIORITY_STEPS = [0, 3, 6, 9]``). Producers LPUSH, workers BRPOP the
  lists in step order (``Channel._brpop_start``).
- A message a worker has reserved (prefetched, or running with ``acks_late``) is in
  the ``unacked`` hash, delivery tag -> ``[message, exchange, routing_key]``
  (``QoS.append``), with its time in the ``unacked_index`` sorted set. With Celery's
  default ``acks_late=False`` a task is acknowledged, so leaves ``unacked``, when it
  starts: running tasks are then only seen in the workers' heartbeats.
- Workers send ``worker-heartbeat`` events every 2 s (``celery/worker/heartbeat.py``,
  ``Heart``, started by the ``Heart`` consumer bootstep in
  ``celery/worker/consumer/heart.py``; ``--without-heartbeat`` turns it off, and
  ``--without-heartbeat --without-gossip --without-mingle`` with ``task_events`` off
  turns off the event dispatcher). The event carries ``hostname``, ``active``
  (tasks running now, ``len(active_requests)``), ``processed``, ``freq``, ``loadavg``
  and ``timestamp``. kombu publishes events as a fanout: PUBLISH on
  ``/<db>.celeryev/worker.heartbeat`` (``keyprefix_fanout = '/{db}.'``, with
  ``fanout_prefix`` and ``fanout_patterns`` on by default), the event JSON base64-encoded
  in a kombu envelope's ``body``.
- No enqueue time is stored in a message (protocol v2 headers have none), so the
  oldest task's age is not known: ``oldest_age_seconds`` is 0 for a celery queue and
  ``targetLatencySeconds`` has nothing to act on.

Per queue per cycle: one EVALSHA running LLEN on each priority list, HVALS on
``unacked`` (O(reserved messages of all queues)), and LLEN x3 and ZCARD on the
taskfleet queue of the same name (what taskfleet workers took from Celery's lists,
taskfleet.celery_wire); the heartbeats cost one PSUBSCRIBE per Redis, held open.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from taskfleet import QueueStats, keys
from taskfleet.batch import Batch
from taskfleet.celery_wire import UNACKED, priority_lists
from taskfleet.connection import Client, redact
from taskfleet.subscription import hold_subscription

from .base import OneCallPerQueue, QueueRedis

if TYPE_CHECKING:
    from ..model import TaskQueue

log = logging.getLogger("taskfleet.operator")

HOSTNAME_PREFIX = "celery@"
"""A pool's workers run with ``--hostname celery@<pod name>``."""
HEARTBEAT_SECONDS = 2.0
"""Celery's default heartbeat interval (``Heart.interval``)."""
WARMUP_SECONDS = 2.5 * HEARTBEAT_SECONDS
"""A fresh subscription has heard every live worker after this long."""


# KEYS: kombu's unacked hash, the taskfleet queue's ready bands and leases (a taskfleet
# worker serving the queue moves Celery's messages there: taskfleet.celery_wire.ADOPT),
# then the Celery queue's priority lists (priority_lists).
# ARGV[1]: the queue's name, the routing key of its messages (Celery's default routing
# binds a queue named X with routing key X).
# Returns {ready, reserved or leased}.
STATS = """
local unacked, urgent, normal, bulk, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local queue = ARGV[1]
local ready = redis.call('LLEN', urgent) + redis.call('LLEN', normal) + redis.call('LLEN', bulk)
for i = 6, #KEYS do ready = ready + redis.call('LLEN', KEYS[i]) end
local reserved = redis.call('ZCARD', leases)
for _, value in ipairs(redis.call('HVALS', unacked)) do
  local ok, entry = pcall(cjson.decode, value)
  if ok and type(entry) == 'table' and entry[3] == queue then reserved = reserved + 1 end
end
return {ready, reserved}
"""


class CeleryProtocol(OneCallPerQueue):
    """No wake-ups (Celery clients publish none): its queues are read every poll. Its
    workers' heartbeats are listened to from a queue's first read on (``watch``)."""

    name = "celery"

    def add_read(self, batch: Batch, client: Client, queue: TaskQueue) -> None:
        native = keys.QueueKeys(queue.queue_name)
        batch.script(client.register_script(STATS),
                     [UNACKED, *native.ready_bands, native.leases,
                      *priority_lists(queue.queue_name, queue.priority_steps)],
                     [queue.queue_name])

    def parse(self, reply: Any) -> QueueStats:
        ready, reserved = reply
        return QueueStats(ready=int(ready), in_flight=int(reserved), delayed=0, dead=0,
                          oldest_age_seconds=0.0)

    def watch(self, queue_redis: QueueRedis, queue: TaskQueue) -> None:
        queue_redis.listener_of(queue, start_worker_events)


PROTOCOL = CeleryProtocol()


def heartbeat_channel_pattern(db: int) -> str:
    """The worker events' PUBLISH channels on one database (kombu's fanout topic)."""
    return f"/{db}.celeryev/worker.*"


MAX_EVENT_BYTES = 64 * 1024
"""A worker-heartbeat is a few hundred bytes; a published payload over this is skipped
undecoded (and counted)."""


def decode_event(payload: str | bytes) -> dict[str, Any] | None:
    """The Celery event in a kombu fanout message, or None when it is not one: anything
    published on the channel (too large, not JSON, nested past the parser's depth, an
    envelope that is not an object) is None, never an exception."""
    if not isinstance(payload, str | bytes) or len(payload) > MAX_EVENT_BYTES:
        return None
    try:
        envelope = json.loads(payload)
        if not isinstance(envelope, dict):
            return None
        body = envelope.get("body")
        properties = envelope.get("properties")
        if isinstance(properties, dict) and properties.get("body_encoding") == "base64":
            if not isinstance(body, str | bytes):
                return None
            body = base64.b64decode(body)
        if not isinstance(body, str | bytes):
            return None
        event = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


def pod_of(hostname: str) -> str | None:
    """The pod a worker runs in, from ``celery@<pod name>``."""
    if not hostname.startswith(HOSTNAME_PREFIX):
        return None
    return hostname[len(HOSTNAME_PREFIX):] or None


class WorkerEvents:
    """The latest ``worker-heartbeat`` of every Celery worker on one Redis database.

    A thread holds a PSUBSCRIBE on the event channels. ``running_by_pod()`` is None
    (no data: the controller holds the pool) until the subscription has been up for
    WARMUP_SECONDS, and while it is down; a worker not heard from for three of its
    heartbeat periods, or that said ``worker-offline``, is gone.
    """

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.monotonic,
                 scrub: Callable[[str], str] = redact) -> None:
        self.client = client
        self.scrub = scrub
        """Redacts what the subscription logs (the operator's: the directory's Secrets)."""
        self.clock = clock
        self.db = int(client.connection_pool.connection_kwargs.get("db", 0))
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[float, int, float]] = {}
        """hostname -> (when heard, active, freq)."""
        self.skipped: dict[str, int] = {}
        """Published payloads that were not worker events, by reason."""
        self._up_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"celery-events-{self.db}",
                                        daemon=True)

    def start(self) -> WorkerEvents:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def running_by_pod(self) -> dict[str, int] | None:
        now = self.clock()
        with self._lock:
            if self._up_since is None or now - self._up_since < WARMUP_SECONDS:
                return None
            out: dict[str, int] = {}
            for hostname, (heard, active, freq) in self._latest.items():
                pod = pod_of(hostname)
                if pod is not None and now - heard <= 3 * max(freq, HEARTBEAT_SECONDS):
                    out[pod] = out.get(pod, 0) + active
            return out

    def subscribed(self, up: bool) -> None:
        """The subscription is up (from now on) or down (the subscription thread calls
        this)."""
        with self._lock:
            self._up_since = self.clock() if up else None

    def heard(self, event: dict[str, Any]) -> bool:
        """Record one event (the subscription thread calls this); False, and nothing
        changed, when it is not a worker event of the right shape (an ``active`` that is
        not a count, a ``freq`` that is not a positive finite number of seconds)."""
        hostname, kind = event.get("hostname"), event.get("type")
        if not isinstance(hostname, str) or kind not in (
                "worker-offline", "worker-heartbeat", "worker-online"):
            return False
        active, freq = event.get("active", 0), event.get("freq", HEARTBEAT_SECONDS)
        if kind != "worker-offline" and not (
                type(active) is int and 0 <= active < 1 << 31
                and type(freq) in (int, float) and 0 < freq <= 3600):
            return False
        with self._lock:
            if kind == "worker-offline":
                self._latest.pop(hostname, None)
            else:
                self._latest[hostname] = (self.clock(), active, float(freq))
        return True

    def skip(self, reason: str) -> None:
        """Count a published payload that is not a worker event (logged the first time)."""
        with self._lock:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1
            first = self.skipped[reason] == 1
        if first:
            log.warning("celery worker events on db %d: skipped a payload (%s); later ones "
                        "are counted only", self.db, reason)

    def _take(self, message: dict[str, Any]) -> None:
        try:
            event = decode_event(message.get("data", b""))
            if event is None:
                self.skip("not a kombu event message")
            elif not self.heard(event):
                self.skip("not a worker event of the right shape")
        except Exception as exc:  # nothing published may end the reader
            self.skip(f"{type(exc).__name__}")

    def _run(self) -> None:
        hold_subscription(self.client,
                          lambda pubsub: pubsub.psubscribe(heartbeat_channel_pattern(self.db)),
                          self._message, self._stop, what=f"celery worker events on db {self.db}",
                          on_subscribed=lambda: self.subscribed(True),
                          on_lost=lambda: self.subscribed(False), scrub=self.scrub)

    def _message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "pmessage":
            self._take(message)


def start_worker_events(client: redis.Redis, scrub: Callable[[str], str]) -> WorkerEvents:
    """The heartbeat listener of one Redis server (QueueRedis.listener_of starts one per
    server)."""
    return WorkerEvents(client, scrub=scrub).start()

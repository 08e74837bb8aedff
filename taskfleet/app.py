"""The application: a task registry bound to a broker."""

from __future__ import annotations

import fnmatch
import functools
import inspect
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypedDict, TypeVar, Unpack, overload

from .broker import Broker
from .connection import Client, app_broker_url, connect, parse_broker_url
from .message import Message, check_arguments, check_priority, encode_calls, new_task_id
from .result import AsyncResult
from .settings import BrokerSettings

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QUEUE = "default"
_BROKER_DEFAULTS = BrokerSettings()


class TaskOptions(TypedDict, total=False):
    """What ``@app.task(...)`` accepts; each has the default of :class:`TaskSettings`."""

    name: str
    queue: str | None
    max_retries: int
    retry_backoff: float
    retry_backoff_max: float
    retry_jitter: bool
    retry_for: tuple[type[BaseException], ...]
    time_limit: float | None
    ignore_result: bool
    track_started: bool


@dataclass(frozen=True)
class TaskSettings:
    """How a task is sent and run (arq's ``Function``): checked once, at registration."""

    name: str
    queue: str | None = None
    """Its queue; None: the app's routes, then its default queue."""
    max_retries: int = 0
    retry_backoff: float = 1.0
    """First retry delay (seconds); doubles per retry, with full jitter."""
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    retry_for: tuple[type[BaseException], ...] = (Exception,)
    """Exceptions that are retried; others dead-letter at once."""
    time_limit: float | None = None
    """Seconds before the task is interrupted (processes pool)."""
    ignore_result: bool = False
    track_started: bool = False
    """Status STARTED while it runs (one more Redis write per run, so off by default,
    as in Celery)."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"task {self.name}: max_retries must be >= 0, "
                             f"got {self.max_retries}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"task {self.name}: time_limit must be > 0 seconds, "
                             f"got {self.time_limit}")


class Task(Generic[P, R]):
    """A registered function; call it to run it here, ``delay`` it to run it on a worker."""

    def __init__(self, app: App, fn: Callable[P, R], settings: TaskSettings) -> None:
        self.app = app
        self.fn = fn
        self.settings = settings
        self.name = settings.name
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", settings.name)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The function's signature. A message's arguments are bound to it only once the
        call raised TypeError, to tell arguments that do not fit (a dead letter, never
        retried) from a TypeError inside the task (execution._bad_arguments)."""
        return inspect.signature(self.fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Run on a worker with these arguments."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
                    countdown: float | None = None, eta: datetime | None = None,
                    queue: str | None = None, priority: int = 0) -> AsyncResult:
        return self.app.send_task(self.name, args, kwargs, countdown=countdown, eta=eta,
                                  queue=queue or self.settings.queue, priority=priority)

    def delay_many(self, arg_tuples: Iterable[Sequence[Any]], *, queue: str | None = None,
                   priority: int = 0) -> list[AsyncResult]:
        """Enqueue one task per argument tuple, in one round trip per queue."""
        return self.app.send_many(self.name, arg_tuples, queue=queue or self.settings.queue,
                                  priority=priority)


class App:
    """Tasks and the broker they travel through.

    ``broker`` is a Redis URL; without it, $TASKFLEET_BROKER_URL is read on
    first use, so a tasks module can be imported where no broker is set.
    ``routes`` maps task-name patterns (``video.*``) to queues for
    ``send_task`` callers that do not name one. A task whose worker died
    holding it ``redelivery_limit`` times goes to the dead-letter list (0: no
    limit), so a poison message cannot kill workers forever. A dead-letter list
    keeps ``dead_letter_limit`` records (the oldest are dropped and counted; 0:
    no cap) unless its TaskQueue sets another. A task whose message would exceed
    ``max_message_bytes`` (1 MiB) is refused at the producer: queues carry
    references to data, not the data. ``replica_acks`` (or the URL's ``?replica_acks=``)
    makes every enqueue and settle wait until that many replicas have it, so a
    failover does not lose an acknowledged task (see docs/redis-modes.md).
    """

    def __init__(self, broker: str | None = None, *, default_queue: str = DEFAULT_QUEUE,
                 routes: dict[str, str] | None = None,
                 result_ttl: int = _BROKER_DEFAULTS.result_ttl,
                 task_lease_seconds: float = 30.0,
                 redelivery_limit: int = _BROKER_DEFAULTS.redelivery_limit,
                 dead_letter_limit: int = _BROKER_DEFAULTS.dead_letter_limit,
                 max_message_bytes: int = _BROKER_DEFAULTS.max_message_bytes,
                 replica_acks: int | None = None) -> None:
        self._broker_url = broker
        self.default_queue = default_queue
        self.routes = dict(routes or {})
        self.task_lease_seconds = task_lease_seconds
        self.broker_settings = BrokerSettings(
            result_ttl=result_ttl, redelivery_limit=redelivery_limit,
            dead_letter_limit=dead_letter_limit, max_message_bytes=max_message_bytes,
            replica_acks=replica_acks)
        """The one place of the broker's settings; its Broker gets them with the URL's
        replica acknowledgements filled in (BrokerSettings.for_address)."""
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._redis: Client | None = None
        self._broker: Broker | None = None

    # -- connection ---------------------------------------------------------------

    def configure(self, broker: str | None = None, settings: BrokerSettings | None = None
                  ) -> None:
        """Point the app at another broker, or give it other broker settings (what the
        worker does once, at its start, with its --broker and options); the connection
        and the Broker are built again on next use."""
        if broker is not None:
            self._broker_url = broker
        if settings is not None:
            self.broker_settings = settings
        self._redis = None
        self._broker = None

    @property
    def own_broker_url(self) -> str | None:
        """The URL the app was given (``App("redis://...")``), if any."""
        return self._broker_url

    @property
    def broker_url(self) -> str:
        """The app's own URL, else $TASKFLEET_BROKER_URL."""
        return app_broker_url(self._broker_url)

    @property
    def redis(self) -> Client:
        if self._redis is None:
            self._redis = connect(self.broker_url)
        return self._redis

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            address = parse_broker_url(self.broker_url)
            self._broker = Broker(self.redis, self.broker_settings.for_address(address))
        return self._broker

    # -- registry -------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R]) -> Task[P, R]: ...

    @overload
    def task(self, fn: None = None, **options: Unpack[TaskOptions]
             ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(self, fn: Callable[P, R] | None = None, **options: Unpack[TaskOptions]
             ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task (``@app.task`` or ``@app.task(name=..., ...)``);
        the options are :class:`TaskSettings`'s. The name defaults to module.function."""

        def register(f: Callable[P, R]) -> Task[P, R]:
            given: TaskOptions = {"name": f"{f.__module__}.{f.__qualname__}", **options}
            settings = TaskSettings(**given)
            t: Task[P, R] = Task(self, f, settings)
            self.tasks[settings.name] = t
            return t

        return register(fn) if fn is not None else register

    def route(self, task_name: str) -> str:
        """The queue of a task sent without one: its registration, a route, or the default."""
        registered = self.tasks.get(task_name)
        if registered is not None and registered.settings.queue:
            return registered.settings.queue
        for pattern, queue in self.routes.items():
            if fnmatch.fnmatchcase(task_name, pattern):
                return queue
        return self.default_queue

    # -- producing ------------------------------------------------------------------

    def send_task(self, name: str, args: Sequence[Any] | None = None,
                  kwargs: dict[str, Any] | None = None, *, countdown: float | None = None,
                  eta: datetime | None = None, queue: str | None = None,
                  priority: int = 0) -> AsyncResult:
        """Enqueue a task by name; the code that defines it need not be importable here."""
        message = self._message(name, args or [], kwargs or {}, queue, priority)
        self.broker.enqueue([(message, _due_ms(countdown, eta))])
        return AsyncResult(message.id, self)

    def send_many(self, name: str, arg_tuples: Iterable[Sequence[Any]], *,
                  queue: str | None = None, priority: int = 0) -> list[AsyncResult]:
        """Enqueue many calls of one task in one round trip per queue."""
        # The name, queue and priority are checked once, not per call.
        first = self._message(name, [], {}, queue, priority)
        encoded = encode_calls(first.task, first.queue, first.priority, time.time(),
                               (check_arguments(args, {})[0] for args in arg_tuples))
        self.broker.enqueue_encoded(first.task, first.queue, first.priority, encoded)
        return [AsyncResult(task_id, self) for task_id, _ in encoded]

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id, self)

    def _message(self, name: str, args: Sequence[Any], kwargs: dict[str, Any],
                 queue: str | None, priority: int) -> Message:
        if not isinstance(name, str) or not name:
            raise ValueError("task name must be a non-empty string such as 'video.transcode'")
        a, kw = check_arguments(args, kwargs)
        return Message(id=new_task_id(), task=name, queue=queue or self.route(name), args=a,
                       kwargs=kw, priority=check_priority(priority), enqueued_at=time.time())


def _due_ms(countdown: float | None, eta: datetime | None) -> int:
    if countdown is not None and eta is not None:
        raise ValueError("give countdown or eta, not both")
    if countdown is not None:
        return int((time.time() + countdown) * 1000) if countdown > 0 else 0
    if eta is not None:
        if eta.tzinfo is None:
            raise ValueError("eta must be timezone-aware (datetime.now(timezone.utc) + ...)")
        return int(eta.timestamp() * 1000)
    return 0

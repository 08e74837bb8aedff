"""The ``taskfleet`` command: worker, send, inspect, dead, health, beat, dashboard, and the
commands other packages add (``operator``: :mod:`taskfleet.commands`).

Light to import: redis-py and the library are imported by the commands that use them, so
a worker holds stop signals (signals.hold_stop_signals) within milliseconds of its start,
and a liveness probe (``taskfleet health``) imports nothing it does not need; the added
commands are looked up only when the command is not one of these.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .signals import (
    SUPERVISOR_PID_ENV,
    exit_with_parent,
    hold_stop_signals,
    ignore_stop_signals,
)

if TYPE_CHECKING:
    from .app import App
    from .commands import Command
    from .connection import Client
    from .settings import BrokerSettings, WorkerSettings

POOL_CHILD = "pool-child"
"""How a processes pool's supervisor starts its children; their settings come in their
environment (taskfleet.settings.PoolChildSettings), not as options."""
BUILT_IN = ("worker", "send", "inspect", "dead", "health", "beat", "dashboard", POOL_CHILD)
_GLOBAL_WITH_VALUE = ("--broker", "--log-level")


def load_app(path: str) -> App:
    """Import ``package.module:attribute`` and return the App it names."""
    from .app import App
    from .errors import ConfigError

    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--app {path!r} must look like package.module:app")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--app {path!r}: cannot import {module_name!r} ({exc}); check the "
                          "module path and PYTHONPATH") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ConfigError(f"--app {path!r}: {module_name}.{attr} is not a taskfleet App")
    return app


def _queues(value: str) -> list[str]:
    names = [q.strip() for q in value.split(",") if q.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--queues needs at least one queue name, e.g. default")
    return names


def _number(kind: type[int] | type[float], minimum: float, maximum: float | None = None,
            strict: bool = False) -> Any:
    """An argparse type: a number within bounds, else one line saying which."""
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not {'an integer' if kind is int else 'a number'}") from None
        low_ok = number > minimum if strict else number >= minimum
        if not low_ok or (maximum is not None and number > maximum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            span = f"from {minimum:g} to {maximum:g}" if maximum is not None else bound
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return number
    return parse


def bounded_number(kind: type[int] | type[float], minimum: float,
                   maximum: float | None = None, strict: bool = False) -> Any:
    """An argparse type: a number within bounds, else one line saying which (for the
    options of commands other packages add: taskfleet.commands)."""
    return _number(kind, minimum, maximum, strict)


def _json_arg(kind: type) -> Any:
    def parse(value: str) -> Any:
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
        if not isinstance(parsed, kind):
            raise argparse.ArgumentTypeError(f"must be a JSON {kind.__name__}")
        return parsed
    return parse


def _priority_steps(value: str) -> tuple[str, tuple[int, ...]]:
    from .celery_wire import parse_priority_steps_option

    try:
        return parse_priority_steps_option(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """One line per mistake, naming the option, instead of the usage text and the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser(added: Mapping[str, Command] | None = None) -> argparse.ArgumentParser:
    """The parser of the built-in commands and of ``added`` ones (taskfleet.commands)."""
    p = _Parser(prog="taskfleet", description=__doc__)
    p.add_argument("--broker", help="Redis URL (default: $TASKFLEET_BROKER_URL, then the "
                                    "app's own URL, App('redis://...'))")
    p.add_argument("--log-level", default=os.environ.get("TASKFLEET_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    w = sub.add_parser("worker", help="run tasks from queues, in the order given")
    w.add_argument("--app", required=True, help="import path of the App, e.g. video.tasks:app")
    w.add_argument("--queues", "-Q", type=_queues, default=["default"])
    w.add_argument("--celery-queues", type=_queues, default=[],
                   help="of --queues, those that also take tasks Celery clients send "
                        "(Celery protocol 2, JSON), from Celery's lists on the same Redis")
    w.add_argument("--celery-priority-steps", type=_priority_steps, action="append", default=[],
                   metavar="QUEUE=STEPS",
                   help="a --celery-queues queue's priority lists, as its Celery clients' "
                        "priority_steps say (default: kombu's), e.g. films=0,5,9; once per "
                        "queue")
    w.add_argument("--concurrency", "-c", type=_number(int, 1), default=1,
                   help="tasks run at once: processes or threads (default 1)")
    w.add_argument("--pool", "-P", choices=["processes", "threads", "inline"], default="processes")
    w.add_argument("--drain-timeout", type=_number(float, 0),
                   default=float(os.environ.get("TASKFLEET_DRAIN_TIMEOUT", "25")),
                   help="seconds running tasks get to finish after SIGTERM (default 25)")
    w.add_argument("--task-lease-seconds", type=_number(float, 0, strict=True), default=None,
                   help="visibility timeout of a taken task, kept alive while it runs "
                        "(default: the app's, 30)")
    w.add_argument("--redelivery-limit", type=_number(int, 0), default=None,
                   help="dead-letter a task whose worker died holding it this many times "
                        "(default: the app's, 5; 0: never)")
    w.add_argument("--dead-letter-limit", type=_number(int, 0), default=None,
                   help="records a queue's dead-letter list keeps, oldest dropped first "
                        "(default: the app's, 10000; 0: no cap; a TaskQueue's "
                        "deadLetterLimit wins)")
    w.add_argument("--health-file", default=os.environ.get("TASKFLEET_HEALTH_FILE"),
                   help="touched on every successful heartbeat; see 'taskfleet health'")
    w.add_argument("--metrics-port", type=_number(int, 0, 65535), default=None,
                   help="serve Prometheus metrics on this port")
    w.add_argument("--metrics-address", default="0.0.0.0",
                   help="address the metrics server binds (default all; 127.0.0.1 locally)")

    s = sub.add_parser("send", help="enqueue a task by name")
    s.add_argument("name")
    s.add_argument("--args", type=_json_arg(list), default=[])
    s.add_argument("--kwargs", type=_json_arg(dict), default={})
    s.add_argument("--queue", default=None)
    s.add_argument("--countdown", type=_number(float, 0), default=None,
                   help="seconds before the task may run")
    s.add_argument("--priority", type=_number(int, 0, 9), default=0, help="0-9, 9 most urgent")
    s.add_argument("--wait", type=_number(float, 0, strict=True), default=None,
                   help="wait this many seconds for the result and print it")

    i = sub.add_parser("inspect", help="queue figures and live workers")
    i.add_argument("queues", nargs="*", help="queue names (default: every queue with a key)")
    i.add_argument("--json", action="store_true")

    d = sub.add_parser("dead", help="the dead-letter list of a queue")
    d.add_argument("action", choices=["list", "requeue", "purge"])
    d.add_argument("queue")
    d.add_argument("--limit", type=_number(int, 1), default=None)

    h = sub.add_parser("health", help="exit 0 if a worker's health file is fresh (liveness probe)")
    h.add_argument("--file", default=os.environ.get("TASKFLEET_HEALTH_FILE",
                                                    "/tmp/taskfleet-health"))
    h.add_argument("--max-age", type=_number(float, 0, strict=True), default=60.0)
    b = sub.add_parser("beat", help="send cron schedules from a file, exactly once per tick "
                                     "however many beats run")
    b.add_argument("--schedule", required=True, type=Path,
                   help="YAML file with 'schedules:' (name, cron, timezone, task, args, "
                        "kwargs, queue, startingDeadlineSeconds, suspend)")
    b.add_argument("--interval", type=_number(float, 0, strict=True), default=1.0,
                   help="seconds between passes")

    web = sub.add_parser("dashboard", help="serve the web dashboard of the broker's queues, "
                                           "workers, dead letters and tasks")
    web.add_argument("--port", type=_number(int, 1, 65535), default=8089)
    web.add_argument("--address", default="127.0.0.1",
                     help="address to bind (default 127.0.0.1; any other needs the token in "
                          "$TASKFLEET_DASHBOARD_TOKEN, which every read then needs)")
    web.add_argument("--allowed-host", action="append", default=[], dest="allowed_hosts",
                     help="a host name the dashboard answers to besides 127.0.0.1, localhost "
                          "and ::1 (the Host header; repeat for more)")
    web.add_argument("--queues", type=lambda v: [q for q in v.split(",") if q], default=[],
                     help="queues to show, comma-separated (default: every queue found)")
    web.add_argument("--actions", action="store_true",
                     help="allow requeue and purge of dead letters, with the token in "
                          "$TASKFLEET_DASHBOARD_TOKEN and a confirmation")

    sub.add_parser(POOL_CHILD)  # no help: not listed; see POOL_CHILD
    for name, command in (added or {}).items():
        if name not in BUILT_IN:  # a package cannot replace a built-in command
            command.add_arguments(sub.add_parser(name, help=command.help))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command; ``argv`` None when it is the process (the signal handling is then
    the process's own: a test's call with arguments leaves its signals alone)."""
    words = sys.argv[1:] if argv is None else list(argv)
    added = {} if _command_word(words) in BUILT_IN else _added_commands(words)
    args = build_parser(added).parse_args(words)
    owns_signals = argv is None and args.command in ("worker", POOL_CHILD)
    if owns_signals:
        hold_stop_signals()
    import redis

    from .errors import ConfigError, MessageTooLarge

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command in added:
            return added[args.command].run(args)
        return _dispatch(args)
    except (ConfigError, MessageTooLarge) as exc:
        print(f"taskfleet: {_redacted(str(exc), args)}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"taskfleet: redis error: {_redacted(str(exc), args)}", file=sys.stderr)
        return 1
    finally:
        if owns_signals:  # drained or failed: a stop now has nothing left to stop
            ignore_stop_signals()


def _command_word(words: Sequence[str]) -> str | None:
    """The command named in ``words`` (the first word that is not an option of the
    ``taskfleet`` command itself), or None."""
    it = iter(words)
    for word in it:
        if word in _GLOBAL_WITH_VALUE:
            next(it, None)
        elif not word.startswith("-"):
            return word
    return None


def _added_commands(words: Sequence[str]) -> Mapping[str, Command]:
    """The added commands; for one of this distribution's that is not installed, one line
    that names its ``pip install`` instead of argparse's 'invalid choice'."""
    from .commands import installed, missing

    added = installed()
    name = _command_word(words)
    if name is not None and name not in added and (install := missing(name)):
        print(f"taskfleet: {install}", file=sys.stderr)
        raise SystemExit(2)
    return added


def _redacted(text: str, args: argparse.Namespace) -> str:
    """An error line without the broker's passwords: of its URL and of the password
    variables (taskfleet.connection's one redaction)."""
    from .connection import BROKER_ENV, PASSWORD_ENV, SENTINEL_PASSWORD_ENV, redact

    return redact(text, [os.environ.get(PASSWORD_ENV), os.environ.get(SENTINEL_PASSWORD_ENV),
                         *_url_passwords(getattr(args, "broker", None)),
                         *_url_passwords(os.environ.get(BROKER_ENV))])


def _url_passwords(url: str | None) -> list[str]:
    from .connection import url_passwords
    from .errors import ConfigError

    try:
        return url_passwords(url) if url else []
    except ConfigError:
        return []  # its errors hold no part of the URL


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "health":
        return _health(Path(args.file), args.max_age)
    if args.command == "worker":
        return _worker(args)
    if args.command == POOL_CHILD:
        return _pool_child()
    from .app import App
    from .connection import broker_url, connect
    from .errors import ConfigError, ResultTimeout, TaskFailed

    url = broker_url(args.broker)
    if args.command == "beat":
        from .beat import run_beat

        return run_beat(url, args.schedule, args.interval)
    client = connect(url)
    if args.command == "dashboard":
        return _dashboard(args, client)
    if args.command == "send":
        app = App(url)
        try:
            result = app.send_task(args.name, args.args, args.kwargs, queue=args.queue,
                                   countdown=args.countdown, priority=args.priority)
        except (TypeError, ValueError) as exc:  # a bad name; JSON was checked by argparse
            raise ConfigError(f"send {args.name!r}: {exc}") from exc
        print(result.id)
        if args.wait is None:
            return 0
        try:
            print(json.dumps(result.get(timeout=args.wait)))
        except ResultTimeout:
            print(f"taskfleet: no result for task {result.id} within --wait {args.wait:g} s; "
                  "it stays queued or running (see 'taskfleet inspect')", file=sys.stderr)
            return 1
        except TaskFailed as exc:
            print(f"taskfleet: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "inspect":
        return _inspect(client, args.queues, args.json)
    return _dead(App(url), args.action, args.queue, args.limit)


def _dead(app: App, action: str, queue: str, limit: int | None) -> int:
    """``taskfleet dead``: records on stdout, one JSON object a line; a record that cannot
    be decoded, or requeued, is named on stderr with the reason."""
    from .records import DEAD_PAGE_SIZE, UnreadableRecord

    if action == "list":
        for n, record in enumerate(app.broker.dead_list(queue, limit or DEAD_PAGE_SIZE), 1):
            if isinstance(record, UnreadableRecord):
                print(f"taskfleet: dead letter {n} of {queue}: {record.reason}",
                      file=sys.stderr)
            else:
                print(json.dumps(record.as_dict()))
    elif action == "requeue":
        done = app.broker.dead_requeue(queue, limit)
        print(f"requeued {done.moved}")
        for label, reason in done.left:
            print(f"taskfleet: left {label[:200]} in the dead-letter list: {reason}",
                  file=sys.stderr)
    else:
        print(f"purged {app.broker.dead_purge(queue)}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .celery_wire import DEFAULT_PRIORITY_STEPS
    from .connection import broker_url
    from .errors import ConfigError
    from .settings import PoolChildSettings, WorkerSettings

    stray = [q for q in args.celery_queues if q not in args.queues]
    if stray:
        raise ConfigError(f"--celery-queues {stray[0]}: list it in --queues too (the order "
                          "there is the order queues are served)")
    steps = dict(args.celery_priority_steps)
    stray = [q for q in steps if q not in args.celery_queues]
    if stray:
        raise ConfigError(f"--celery-priority-steps {stray[0]}: list it in --celery-queues "
                          "too")
    processes = args.pool == "processes"
    try:  # the processes pool: what each of its children runs with
        worker = WorkerSettings(queues=args.queues, concurrency=1 if processes
                                else args.concurrency, pool="inline" if processes
                                else args.pool, drain_timeout=args.drain_timeout,
                                task_lease_seconds=args.task_lease_seconds,
                                health_file=args.health_file, supervised=processes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    app = load_app(args.app)  # in a processes pool's supervisor too: its errors once, here
    url = broker_url(args.broker, app.own_broker_url, args.app)
    limits = {name: value for name, value in (("redelivery_limit", args.redelivery_limit),
                                              ("dead_letter_limit", args.dead_letter_limit))
              if value is not None}
    broker = replace(app.broker_settings, **limits,
                     celery_queues={q: steps.get(q, DEFAULT_PRIORITY_STEPS)
                                   for q in args.celery_queues})
    if not processes:
        return _serve(app, url, broker, worker, args.metrics_port, args.metrics_address)
    from .supervisor import Supervisor

    if args.metrics_port is not None:  # the children record, the supervisor serves
        from .metrics import prepare_multiprocess, serve

        prepare_multiprocess()
        serve(args.metrics_port, args.metrics_address, multiprocess=True)
    child = PoolChildSettings(app=args.app, broker_url=url, broker=broker, worker=worker,
                              log_level=args.log_level, metrics=args.metrics_port is not None)
    return Supervisor(child, args.concurrency).run()


def _pool_child() -> int:
    """A child of a processes pool: its supervisor's settings, from its environment."""
    from .errors import ConfigError
    from .settings import POOL_CHILD_ENV, PoolChildSettings

    encoded = os.environ.get(POOL_CHILD_ENV)
    if not encoded:
        raise ConfigError(f"{POOL_CHILD} is how 'taskfleet worker --pool processes' starts its "
                          f"children (their settings in ${POOL_CHILD_ENV}); run that instead")
    child = PoolChildSettings.decode(encoded)
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor:
        exit_with_parent(int(supervisor))
    logging.getLogger().setLevel(child.log_level.upper())
    return _serve(load_app(child.app), child.broker_url, child.broker, child.worker,
                  0 if child.metrics else None, "")


def _serve(app: App, url: str, broker: BrokerSettings, settings: WorkerSettings,
           metrics_port: int | None, metrics_address: str) -> int:
    """Run a worker in this process; metrics recorded unless ``metrics_port`` is None, and
    served unless it is 0."""
    from .worker import Worker

    app.configure(url, broker)
    metrics = None
    if metrics_port is not None:
        from .metrics import PrometheusMetrics, serve

        if metrics_port:
            serve(metrics_port, metrics_address, multiprocess=False)
        metrics = PrometheusMetrics()
    return Worker(app, settings, metrics).run()


def _dashboard(args: argparse.Namespace, client: Client) -> int:
    from .errors import ConfigError

    try:
        from .dashboard import AccessSettings, RedisSource, build_app, serve
    except ImportError as exc:
        raise ConfigError(f"the dashboard needs aiohttp: pip install 'taskfleet[dashboard]' "
                          f"({exc})") from exc
    try:
        access = AccessSettings.from_environment(args.address, args.actions, args.allowed_hosts)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    app = build_app(RedisSource(client, args.queues), access)
    print(f"taskfleet dashboard on http://{args.address}:{args.port}/ "
          f"({'actions enabled' if args.actions else 'read-only'}"
          f"{', token needed' if access.token else ''})", flush=True)
    serve(app, args.address, args.port)
    return 0


def _inspect(client: Client, names: list[str], as_json: bool) -> int:
    from . import heartbeat, keys
    from .connection import text
    from .stats import queue_stats

    if not names:
        names = sorted({keys.queue_of_key(text(k)) for pattern in keys.QUEUE_SCAN_PATTERNS
                        for k in client.scan_iter(match=pattern, count=1000)})
    stats = queue_stats(client, names)
    workers = heartbeat.live_workers(client)
    if as_json:
        print(json.dumps({
            "queues": {n: s.as_dict() for n, s in stats.items()},
            "workers": [{"id": w.id, "pod": w.pod, "queues": w.queues, "busy": w.busy,
                         "last_seen": w.last_seen} for w in workers],
        }))
        return 0
    print(f"{'QUEUE':<24}{'READY':>8}{'IN-FLIGHT':>11}{'DELAYED':>9}{'DEAD':>7}{'OLDEST':>10}")
    for n, st in stats.items():
        print(f"{n:<24}{st.ready:>8}{st.in_flight:>11}{st.delayed:>9}{st.dead:>7}"
              f"{st.oldest_age_seconds:>9.1f}s")
    print()
    print(f"{'WORKER':<40}{'POD':<28}{'QUEUES':<24}{'BUSY':>5}{'SEEN':>8}")
    now = time.time()
    for w in workers:
        print(f"{w.id:<40}{w.pod:<28}{','.join(w.queues):<24}{w.busy:>5}"
              f"{now - w.last_seen:>7.0f}s")
    return 0


def _health(path: Path, max_age: float) -> int:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: {path} missing (worker never reached Redis)", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"unhealthy: no successful heartbeat for {age:.0f}s", file=sys.stderr)
        return 1
    return 0

"""The dashboard's HTTP server (aiohttp): one static page and a small JSON API.

Every request must name an allowed host (127.0.0.1, localhost, ::1 and the names it was
given) in its Host header, and in its Origin header when it sends one: a DNS-rebinding
page on another name is refused. With a token set ($TASKFLEET_DASHBOARD_TOKEN) every API
read needs it too, as ``Authorization: Bearer <token>`` or in the ``X-Taskfleet-Token``
header; without one the dashboard serves on loopback only (reached with
``kubectl port-forward``, which the API server authorizes).

Reads run on a thread (the Redis client blocks). Actions (requeue, purge) answer 403
unless the server was started with actions enabled, and then need the token in the
``X-Taskfleet-Token`` header and ``{"confirm": "<queue label>"}`` in the body.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from ..broker import Broker
from .sources import DashboardSource
from .views import PoolHistory, dead_rows, find_queue, overview, task_view

log = logging.getLogger("taskfleet.dashboard")

TOKEN_HEADER = "X-Taskfleet-Token"
TOKEN_ENV = "TASKFLEET_DASHBOARD_TOKEN"
"""Where `taskfleet dashboard --actions` and the operator read the token (never a flag:
flags show in ps)."""
STATIC = ("index.html", "app.js", "style.css")
_CONTENT_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MIN_TOKEN = 16
MAX_REQUEST_BYTES = 64 * 1024
"""An action's body is a queue name and its confirmation: a bigger one is refused (413)."""


def _token_matches(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def host_name(value: str) -> str:
    """The host of a Host header or of an Origin's authority, lower case, without its port
    or IPv6 brackets ("" when it cannot be read)."""
    try:
        parsed = urllib.parse.urlsplit(f"//{value.strip()}")
        return (parsed.hostname or "").lower()
    except ValueError:
        return ""


def is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessSettings:
    """Where the dashboard serves and who may read and act there, with the token rule
    checked here and only here, when built: a token has MIN_TOKEN characters at least;
    actions (requeue, purge) need one; without one, reads are served on loopback only.
    ``hosts``: the host names it answers to besides 127.0.0.1, localhost and ::1."""

    token: str = ""
    hosts: frozenset[str] = frozenset()
    actions: bool = False
    address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.actions and not self.token:
            raise ValueError(f"dashboard actions need a token of at least {MIN_TOKEN} "
                             f"characters in ${TOKEN_ENV} (for example: export "
                             f"{TOKEN_ENV}=$(openssl rand -hex 16))")
        if self.token and len(self.token) < MIN_TOKEN:
            raise ValueError(f"the dashboard token in ${TOKEN_ENV} needs at least "
                             f"{MIN_TOKEN} characters")
        if not self.token and not is_loopback(self.address):
            raise ValueError(
                f"the dashboard would serve every queue, worker and result without "
                f"credentials on {self.address}: set a token of {MIN_TOKEN}+ characters in "
                f"{TOKEN_ENV} (then every read needs it), or bind 127.0.0.1 and reach it "
                "with kubectl port-forward")

    @classmethod
    def from_environment(cls, address: str, actions: bool = False,
                         hosts: Iterable[str] = ()) -> AccessSettings:
        """The settings of a dashboard on ``address``, its token from $TASKFLEET_DASHBOARD_TOKEN;
        ValueError, naming the fix, when the token rule refuses them."""
        return cls(os.environ.get(TOKEN_ENV, ""), frozenset(hosts), actions, address)

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return LOCAL_HOSTS | {h.lower().strip("[]") for h in self.hosts}

    def host_refusal(self, request: web.Request) -> str | None:
        allowed = self.allowed_hosts
        if host_name(request.headers.get("Host", "")) not in allowed:
            return ("this dashboard does not answer to that Host name (allowed: "
                    f"{', '.join(sorted(allowed))})")
        origin = request.headers.get("Origin")
        if origin is not None:
            try:
                origin_host = (urllib.parse.urlsplit(origin).hostname or "").lower()
            except ValueError:
                origin_host = ""
            if origin_host not in allowed:
                return "requests from another site's pages are refused (Origin)"
        return None

    def read_refusal(self, request: web.Request) -> str | None:
        if not self.token:
            return None
        bearer = request.headers.get("Authorization", "")
        given = bearer[7:].strip() if bearer[:7].lower() == "bearer " else ""
        if _token_matches(given, self.token) or _token_matches(
                request.headers.get(TOKEN_HEADER, ""), self.token):
            return None
        return (f"the dashboard token is needed: Authorization: Bearer <token> or the "
                f"{TOKEN_HEADER} header")

    def action_refusal(self, request: web.Request) -> str | None:
        """Why an action request is refused, or None."""
        if not self.actions:
            return ("actions are off: this dashboard is read-only (start it with actions "
                    f"enabled and {TOKEN_ENV} set)")
        if not _token_matches(request.headers.get(TOKEN_HEADER, ""), self.token):
            return f"a valid token is needed in the {TOKEN_HEADER} header"
        return None


def _static(name: str) -> bytes:
    return resources.files("taskfleet.dashboard").joinpath("static", name).read_bytes()


def build_app(source: DashboardSource, access: AccessSettings | None = None
              ) -> web.Application:
    access = access or AccessSettings()
    history = PoolHistory()
    lock = threading.Lock()
    pages = {name: _static(name) for name in STATIC}

    async def blocking(fn: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(fn)

    def page(name: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=pages[name],
                                content_type=_CONTENT_TYPES[name.rsplit(".", 1)[1]],
                                headers={"Cache-Control": "no-store"})
        return handler

    async def api_overview(request: web.Request) -> web.StreamResponse:
        def read() -> dict[str, Any]:
            with lock:
                return overview(source, history)
        data = await blocking(read)
        data["actions"] = access.actions
        return web.json_response(data)

    async def api_dead(request: web.Request) -> web.StreamResponse:
        label = request.query.get("queue", "")
        queue = await blocking(lambda: find_queue(source, label))
        if queue is None:
            return _error(404, f"no queue {label!r}")
        rows = await blocking(lambda: dead_rows(queue))
        return web.json_response({"queue": label, "dead": rows})

    async def api_task(request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"].strip()
        if not task_id or len(task_id) > 200:
            return _error(400, "give a task id")
        return web.json_response(await blocking(lambda: task_view(source.queues(), task_id)))

    def action(kind: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            refused = access.action_refusal(request)
            if refused is not None:
                log.warning("dashboard: %s refused: %s", kind, refused)
                return _error(403, refused)
            try:
                body = await request.json()
            except ValueError:
                body = None
            label = body.get("queue") if isinstance(body, dict) else None
            if not isinstance(label, str) or body.get("confirm") != label:
                return _error(400, 'confirm the action: send {"queue": Q, "confirm": Q}')
            queue = await blocking(lambda: find_queue(source, label))
            if queue is None:
                return _error(404, f"no queue {label!r}")
            broker = Broker(queue.client)
            if kind == "requeue":
                done = await blocking(lambda: broker.dead_requeue(queue.queue))
                count = done.moved
                if done.left:  # one line, however many: `taskfleet dead requeue` names each
                    record, reason = done.left[0]
                    log.info("dashboard: requeue of %s left %d record(s) in the dead-letter "
                             "list, the first %s: %s", label, len(done.left), record[:200],
                             reason)
            else:
                count = await blocking(lambda: broker.dead_purge(queue.queue))
            log.info("dashboard: %s of %s: %d record(s)", kind, label, count)
            return web.json_response({"queue": label, kind: count})
        return handler

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = access.host_refusal(request)
        if refused is not None:
            log.warning("dashboard: %s %s refused: %s", request.method, request.path, refused)
            return _error(403, refused)
        if request.path.startswith("/api/"):
            refused = access.read_refusal(request)
            if refused is not None:
                return web.json_response({"error": refused}, status=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    app = web.Application(middlewares=[guard], client_max_size=MAX_REQUEST_BYTES)
    app.router.add_get("/", page("index.html"))
    for name in STATIC:
        app.router.add_get(f"/{name}", page(name))
    app.router.add_get("/api/overview", api_overview)
    app.router.add_get("/api/dead", api_dead)
    app.router.add_get("/api/task/{task_id}", api_task)
    app.router.add_post("/api/dead/requeue", action("requeue"))
    app.router.add_post("/api/dead/purge", action("purge"))
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def serve(app: web.Application, address: str, port: int) -> None:
    """Serve until interrupted (the foreground of `taskfleet dashboard`)."""
    web.run_app(app, host=address, port=port, print=None, handle_signals=True, access_log=None)


def serve_in_thread(app: web.Application, address: str, port: int,
                    stop: threading.Event) -> threading.Thread:
    """Serve on a thread with its own event loop until ``stop`` is set (the operator)."""
    started = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app, access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, address, port).start())
        except OSError as exc:  # the port is taken, or the address is not ours
            failed.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        while not stop.is_set():
            loop.run_until_complete(asyncio.sleep(0.5))
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True, name="taskfleet-dashboard")
    thread.start()
    started.wait(10)
    if failed:
        raise OSError(f"the dashboard cannot serve on {address}:{port}: {failed[0]}")
    return thread

"""A real redis-server on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class RedisServer:
    """Starts ``redis-server`` bound to 127.0.0.1 without persistence; ``stop`` ends it.

    For fault tests: ``bind`` adds addresses (a veth's, say) beside 127.0.0.1;
    ``appendfsync`` ('always' or 'everysec') turns the append-only file on, so
    ``kill`` and ``start`` again on the same port and directory is a crash and
    recovery; ``pause`` and ``resume`` freeze it (SIGSTOP, SIGCONT).
    """

    def __init__(self, port: int | None = None, password: str | None = None,
                 tls: bool = False, bind: Sequence[str] = ("127.0.0.1",),
                 appendfsync: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run 'make setup' (installs Debian's "
                               "redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="taskfleet-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.tls = tls
        self.bind = list(bind)
        if appendfsync not in (None, "always", "everysec"):
            raise ValueError(f"appendfsync must be always or everysec; got {appendfsync!r}")
        self.appendfsync = appendfsync
        if tls:  # a self-signed certificate for 127.0.0.1, which clients trust as their CA
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", str(self.dir / "key.pem"), "-out",
                            str(self.dir / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return (f"rediss://{auth}127.0.0.1:{self.port}/0"
                    f"?ssl_ca_certs={self.dir / 'cert.pem'}")
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        # Addresses other than loopback are private ones the caller made (a veth pair);
        # protected mode would refuse their clients, there being no password.
        protected = "yes" if self.bind == ["127.0.0.1"] or self.password else "no"
        args = [self.binary, "--bind", *self.bind, "--port", str(self.port), "--save", "",
                "--appendonly", "yes" if self.appendfsync else "no", "--dir", str(self.dir),
                "--protected-mode", protected]
        if self.appendfsync:
            args += ["--appendfsync", self.appendfsync]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
                     "--tls-cert-file", str(self.dir / "cert.pem"),
                     "--tls-key-file", str(self.dir / "key.pem")]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)
        client.close()
        return self

    def url_at(self, host: str) -> str:
        """The URL on another of its addresses (``bind``); plain TCP, no password."""
        return f"redis://{host}:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL, as a node loss or the OOM killer would: no shutdown, no final fsync."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a stalled VM, a long GC)."""
        assert self.process is not None, "redis-server is not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None, "redis-server is not running"
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

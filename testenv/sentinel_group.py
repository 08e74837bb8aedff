"""A Sentinel group on loopback: one master, two replicas, three sentinels, in seconds.

Debian's ``redis-server`` runs both roles (``--sentinel`` makes it a sentinel), so no
other package is needed. ``kill_master`` SIGKILLs the master; the sentinels promote a
replica within about two seconds (``down-after-milliseconds`` 1000).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from .processes import stop_all
from .redis_server import free_port

MASTER_NAME = "tfmaster"
DOWN_AFTER_MS = 1000
"""How long a master must be silent before the sentinels call it down."""


class SentinelGroup:
    """``url`` is the broker URL (``redis+sentinel://...``); ``close`` stops everything.

    ``password`` protects the data nodes, ``sentinel_password`` the sentinels, apart.
    """

    def __init__(self, password: str | None = None, sentinel_password: str | None = None,
                 replicas: int = 2, sentinels: int = 3) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run 'make setup'")
        self.binary = binary
        self.password = password
        self.sentinel_password = sentinel_password
        self.dir = Path(tempfile.mkdtemp(prefix="taskfleet-sentinel-"))
        self.data_ports = [free_port() for _ in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"redis+sentinel://{auth}{hosts}/{MASTER_NAME}/0{query}"

    def _data_args(self, port: int) -> list[str]:
        d = self.dir / str(port)
        d.mkdir(exist_ok=True)
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                "--appendonly", "no", "--dir", str(d), "--repl-diskless-sync-delay", "0"]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return args

    def _spawn(self, port: int, args: list[str]) -> None:
        self.processes[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)

    def start(self) -> SentinelGroup:
        master, *replicas = self.data_ports
        self._spawn(master, self._data_args(master))
        for port in replicas:
            self._spawn(port, [*self._data_args(port), "--replicaof", "127.0.0.1", str(master)])
        # Sentinels learn the replicas from the master's INFO, which they read every 10 s:
        # start them once the replicas are linked, so the first read finds them.
        deadline = time.monotonic() + 20
        while not self._replicas_linked(master, len(replicas)):
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas did not link to the master within 20s")
            time.sleep(0.05)
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            lines = [f"port {port}", "bind 127.0.0.1", f"dir {self.dir}",
                     f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2",
                     f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                     f"sentinel failover-timeout {MASTER_NAME} 5000",
                     f"sentinel parallel-syncs {MASTER_NAME} 2"]
            if self.password:
                lines.append(f"sentinel auth-pass {MASTER_NAME} {self.password}")
            if self.sentinel_password:
                lines.append(f"requirepass {self.sentinel_password}")
            conf.write_text("\n".join(lines) + "\n")
            self._spawn(port, [self.binary, str(conf), "--sentinel"])
        self._wait_ready()
        return self

    def _replicas_linked(self, port: int, count: int) -> bool:
        try:
            info = self.data_client(port).info("replication")
        except redis.RedisError:
            return False
        online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                  and v.get("state") == "online"]
        return len(online) >= count

    def data_client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=2,
                           decode_responses=True)

    def sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.sentinel_password, socket_timeout=2,
                           decode_responses=True)

    def master_port(self) -> int | None:
        """The master's port as the sentinels agree on it (None while they disagree)."""
        seen = set()
        for port in self.sentinel_ports:
            try:
                host_port = self.sentinel_client(port).sentinel_get_master_addr_by_name(
                    MASTER_NAME)
            except redis.RedisError:
                return None
            seen.add(int(host_port[1]) if host_port else None)
        return seen.pop() if len(seen) == 1 else None

    def _ready(self) -> bool:
        port = self.master_port()
        if port is None or port not in self.processes:
            return False
        try:
            info = self.data_client(port).info("replication")
            if info.get("role") != "master" or int(info.get("connected_slaves", 0)) < \
                    len(self.live_data_ports()) - 1:
                return False
            for s in self.sentinel_ports:
                state = self.sentinel_client(s).sentinel_master(MASTER_NAME)
                if int(state["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                    return False
                if int(state["num-slaves"]) < len(self.live_data_ports()) - 1:
                    return False
        except (redis.RedisError, KeyError):
            return False
        return True

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready():
            for port, p in self.processes.items():
                if p.poll() is not None:
                    raise RuntimeError(f"redis on port {port} exited ({p.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError("the Sentinel group did not get ready within "
                                   f"{timeout:g}s (master {self.master_port()})")
            time.sleep(0.1)

    def live_data_ports(self) -> list[int]:
        return [p for p in self.data_ports
                if p in self.processes and self.processes[p].poll() is None]

    def kill_master(self) -> int:
        """SIGKILL the master (no shutdown, no final sync); returns its port."""
        port = self.master_port()
        assert port is not None, "the sentinels do not agree on a master"
        p = self.processes.pop(port)
        p.kill()
        p.wait()
        return port

    def pause_replicas(self) -> list[int]:
        """SIGSTOP every replica (replication lags, as behind a slow link); returns them."""
        master = self.master_port()
        paused = [p for p in self.live_data_ports() if p != master]
        for port in paused:
            self.processes[port].send_signal(signal.SIGSTOP)
        return paused

    def resume(self, ports: list[int]) -> None:
        for port in ports:
            self.processes[port].send_signal(signal.SIGCONT)

    def restart(self, port: int) -> None:
        """Start a killed data node again; the sentinels make it a replica of the new master."""
        self._spawn(port, self._data_args(port))

    def wait_failed_over(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until the sentinels agree on a new master that answers as one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.master_port()
            if port is not None and port != old_port:
                try:
                    if self.data_client(port).info("replication").get("role") == "master":
                        return port
                except redis.RedisError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"no failover within {timeout:g}s")

    def wait_replicated(self) -> None:
        """Until every replica has the master's writes so far (WAIT)."""
        port = self.master_port()
        assert port is not None
        replicas = len(self.live_data_ports()) - 1
        acked = self.data_client(port).wait(replicas, 5000)
        assert acked == replicas, f"{acked} of {replicas} replicas caught up"

    def flushall(self) -> None:
        port = self.master_port()
        assert port is not None
        client = self.data_client(port)
        client.flushall()
        client.wait(len(self.live_data_ports()) - 1, 2000)
        client.close()

    def close(self) -> None:
        stop_all(self.processes.values())
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

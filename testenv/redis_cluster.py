"""A Redis Cluster on loopback: three masters with a replica each, made in seconds.

Nodes are Debian's ``redis-server`` with ``--cluster-enabled yes``; the cluster is
formed by ``redis-cli --cluster create`` as an administrator would.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from .processes import stop_all
from .redis_server import port_is_free


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = random.randrange(20000, 40000)
        if port_is_free(port) and port_is_free(port + 10000):
            return port


def online_replicas(node: redis.Redis) -> int:
    """Replicas done with their first sync (a replica still syncing acknowledges no WAIT)."""
    info = node.info("replication")
    return sum(1 for k, v in info.items()
               if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online")


def cluster_info(node: redis.Redis) -> dict[str, str]:
    raw = node.execute_command("CLUSTER", "INFO")
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class RedisClusterServers:
    """``url`` is the broker URL (``redis+cluster://...``); ``close`` stops every node."""

    def __init__(self, masters: int = 3, replicas_per_master: int = 1) -> None:
        binary = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if binary is None or cli is None:
            raise RuntimeError("redis-server/redis-cli not found: run 'make setup'")
        self.binary, self.cli = binary, cli
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.dir = Path(tempfile.mkdtemp(prefix="taskfleet-cluster-"))
        self.ports = [free_cluster_port() for _ in range(masters * (1 + replicas_per_master))]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5, decode_responses=True)

    def _spawn(self, port: int) -> None:
        d = self.dir / str(port)
        d.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", str(d), "--cluster-enabled", "yes",
             "--cluster-config-file", str(d / "nodes.conf"), "--cluster-node-timeout", "2000",
             "--repl-diskless-sync-delay", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> RedisClusterServers:
        for port in self.ports:
            self._spawn(port)
        for port in self.ports:
            self._wait(f"node {port} answers", lambda p=port: self._pings(p), 10)
        subprocess.run([self.cli, "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self._wait("every node sees the cluster ok", self._all_ok, 30)
        return self

    def _pings(self, port: int) -> bool:
        try:
            return bool(self.node(port).ping())
        except redis.RedisError:
            return False

    def _all_ok(self) -> bool:
        try:
            for port in self.ports:
                info = cluster_info(self.node(port))
                if info.get("cluster_state") != "ok" or \
                        int(info.get("cluster_known_nodes", 0)) < len(self.ports):
                    return False
            return len(self.master_ports()) == self.masters and all(
                online_replicas(self.node(p)) >= self.replicas_per_master
                for p in self.master_ports())
        except redis.RedisError:
            return False

    def _wait(self, what: str, probe: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not probe():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster: timed out waiting for {what}")
            time.sleep(0.1)

    def master_ports(self) -> list[int]:
        out = []
        for port, p in self.processes.items():
            if p.poll() is not None:
                continue
            try:
                if self.node(port).info("replication").get("role") == "master":
                    out.append(port)
            except redis.RedisError:
                continue
        return sorted(out)

    def port_of_slot(self, slot: int) -> int:
        """The port of the master that owns ``slot`` now."""
        return self._owner(slot)

    def move_slot(self, slot: int, to_port: int) -> None:
        """Migrate one slot (its keys one by one, clients redirected with ASK meanwhile)
        with ``redis-cli --cluster reshard``, as an administrator rebalancing would. The
        slot must be the lowest of its node's (slot 0 always is): reshard moves a node's
        slots in order."""
        from_port = self.port_of_slot(slot)
        subprocess.run([self.cli, "--cluster", "reshard", f"127.0.0.1:{from_port}",
                        "--cluster-from", node_id(self.node(from_port)),
                        "--cluster-to", node_id(self.node(to_port)),
                        "--cluster-slots", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=120)

    def _slots(self) -> list[list[object]]:
        return list(self.node(self.master_ports()[0]).execute_command("CLUSTER", "SLOTS"))

    def _owner(self, slot: object) -> int:
        for start, end, master, *_ in self._slots():
            if int(start) <= int(slot) <= int(end):  # type: ignore[call-overload]
                return int(master[1])  # type: ignore[index]
        raise LookupError(slot)

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a machine loss would."""
        p = self.processes.pop(port)
        p.kill()
        p.wait()

    def restart(self, port: int) -> None:
        """Start a killed node again with its cluster state; a master that was replaced
        comes back as a replica of its successor."""
        self._spawn(port)

    def flushall(self) -> None:
        for port in self.master_ports():
            self.node(port).flushall()

    def close(self) -> None:
        stop_all(self.processes.values())
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def node_id(node: redis.Redis) -> str:
    raw = node.execute_command("CLUSTER", "MYID")
    return raw.decode() if isinstance(raw, bytes) else str(raw)

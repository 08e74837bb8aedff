"""Commands and Lua scripts sent in one pipelined round trip, on one server or a cluster.

redis-py's cluster pipeline groups the commands by the node owning their keys'
slot, writes every node's batch before reading any reply (so a batch costs one
round trip per node, the nodes working in parallel) and follows MOVED/ASK one
command at a time. Left to itself, it asks a server for the keys of every EVALSHA
(``COMMAND GETKEYS``, in _send_cluster_commands' default-policy branch, redis-py
8.1), one round trip per script: scripts here name their node from the client's
slot table instead. It refuses ``Script`` objects (``evalsha`` is blocked in
cluster pipelines, redis/cluster.py PIPELINE_BLOCKED_COMMANDS), so scripts go in
as plain ``EVALSHA`` commands, which it routes by their keys. A node that does
not know a script yet (a new node, a promoted replica, a flushed cache) answers
NOSCRIPT for that command only: the batch loads the script (on every primary of a
cluster) and sends just those commands again. Redis's regular pipeline checks
every script with SCRIPT EXISTS before each batch, one more round trip; this way
costs that round trip only when a script is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from .connection import Client
from .errors import ReplicaAckTimeout


class Batch:
    """Queue commands with ``command`` and scripts with ``script``; ``execute`` sends them."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._pipe = client.pipeline(transaction=False)
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._calls: list[tuple[Script | None, tuple[Any, ...]]] = []
        self._waits: list[int] = []

    def __len__(self) -> int:
        return len(self._calls)

    def command(self, *args: Any) -> None:
        self._pipe.execute_command(*args)
        self._calls.append((None, args))

    def script(self, script: Script, keys: Sequence[str], args: Sequence[Any] = ()) -> None:
        call = ("EVALSHA", script.sha, len(keys), *keys, *args)
        if self._cluster is not None and keys:
            # Named here from the slot table: left to itself, the cluster pipeline asks
            # the server for an EVALSHA's keys (COMMAND GETKEYS), one round trip per
            # script. A MOVED reply is still followed, by the keys.
            self._pipe.execute_command(
                *call, target_nodes=self._cluster.get_node_from_key(keys[0]))  # type: ignore[no-untyped-call]
        else:
            self._pipe.execute_command(*call)
        self._calls.append((script, call))

    def wait(self, call: tuple[Any, ...], node: Any = None) -> None:
        """``WAIT numreplicas timeout`` (on ``node`` of a cluster): the reply is checked."""
        if node is None:
            self._pipe.execute_command(*call)
        else:
            self._pipe.execute_command(*call, target_nodes=node)
        self._waits.append(len(self._calls))
        self._calls.append((None, call))

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Every reply in order; raises the first error (after NOSCRIPT ones are re-sent), or
        with ``raise_on_error=False`` leaves each error in its place, so one queue's bad
        key does not hide the figures of the others."""
        if not self._calls:
            return []
        calls, self._calls = self._calls, []
        waits, self._waits = self._waits, []
        replies = self._pipe.execute(raise_on_error=False)
        missing = {i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)}
        loaded: set[str] = set()
        for i in sorted(missing):
            script, call = calls[i]
            if script is None:
                continue
            if script.sha not in loaded:
                self.client.script_load(script.script)
                loaded.add(script.sha)
            try:
                replies[i] = self.client.execute_command(*call)  # type: ignore[no-untyped-call]
            except Exception as exc:  # kept in place and raised below, as a pipeline would
                replies[i] = exc
        for reply in replies:
            if raise_on_error and isinstance(reply, Exception):
                raise reply
        for i in waits:
            wanted, timeout_ms = int(calls[i][1][1]), int(calls[i][1][2])
            if int(replies[i]) < wanted:
                raise ReplicaAckTimeout(
                    f"the write reached {replies[i]} of the {wanted} replica(s) asked for "
                    f"(replica_acks) within {timeout_ms} ms; it is on the master, but a "
                    "failover now could lose it")
        return list(replies)

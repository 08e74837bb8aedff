"""A network namespace joined to this machine by a veth pair, for partition tests.

The pair carries a private /30 (10.213.x.y) between this machine and the
namespace only: nothing is routed anywhere else. Taking the host end down cuts
every connection across it without closing one (no RST, no FIN), as a network
partition does; bringing it up lets TCP's retransmissions carry on. ``remove``
deletes the namespace (its bind mount under /run/netns with it) and the pair,
and unmounts /run/netns itself when the first ``ip netns add`` made it a mount
point here and no other namespace is left in it. Needs root and iproute2's ``ip``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns`` keeps its namespaces: a directory it bind-mounts on itself."""
SUBNETS = ipaddress.IPv4Network("10.213.0.0/16")
"""Private addresses the pairs are cut from, one /30 each."""


def netns_available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "no 'ip' command (Debian's iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"'ip netns' does not work here: {probe.stderr.strip()}"
    return None


class VethNamespace:
    """``ip netns add NAME`` plus a veth pair: ``host_address`` on this machine's end,
    ``ns_address`` inside. ``slot`` picks the /30 (a run's pid keeps runs apart)."""

    def __init__(self, name: str, slot: int = 0) -> None:
        subnet = list(SUBNETS.subnets(new_prefix=30))[slot % (2 ** 14)]
        host, inside = list(subnet.hosts())
        self.name = name
        self.host_address = str(host)
        self.ns_address = str(inside)
        self.prefix = subnet.prefixlen
        tag = f"{slot % (2 ** 14):x}"
        self.host_if = f"tfh{tag}"  # interface names: 15 characters at most
        self.ns_if = f"tfn{tag}"
        self._made_mount = False

    def create(self) -> VethNamespace:
        """Make the namespace and the pair, both ends up; on failure nothing stays."""
        self._made_mount = not _is_mount_point(NETNS_DIR)
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_address}/{self.prefix}", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            self._inside("addr", "add", f"{self.ns_address}/{self.prefix}", "dev", self.ns_if)
            self._inside("link", "set", self.ns_if, "up")
            self._inside("link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def argv(self, command: Sequence[str]) -> list[str]:
        """A command line that runs ``command`` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def link_down(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def link_up(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def remove(self) -> None:
        """Delete the namespace (which deletes its end of the pair, and so the pair) and the
        host end in case the namespace never got it. Safe to call twice."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        if self._made_mount and _is_mount_point(NETNS_DIR) and not any(NETNS_DIR.iterdir()):
            subprocess.run(["umount", str(NETNS_DIR)], capture_output=True)

    def exists(self) -> bool:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True,
                               text=True).stdout
        return any(line.split()[:1] == [self.name] for line in names.splitlines()) or \
            f" {self.host_if}@" in links or f" {self.host_if}:" in links

    def _inside(self, *args: str) -> None:
        _ip("netns", "exec", self.name, "ip", *args)


def _is_mount_point(path: Path) -> bool:
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    return any(line.split()[4] == str(path) for line in mounts)


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {out.stderr.strip()}")

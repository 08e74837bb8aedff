"""Commands other packages add to ``taskfleet``, found through the ``taskfleet.commands``
entry-point group: ``taskfleet operator`` comes from the operator's package this way, so
the runtime never imports the operator (its arrows point one way: operator -> runtime).

A command is an object with ``help``, ``add_arguments(parser)`` and ``run(args) -> int``;
``run`` raises :class:`taskfleet.errors.ConfigError` for a mistake the user can fix.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Protocol

GROUP = "taskfleet.commands"

EXTRA_OF = {"operator": "operator"}
"""Commands this distribution ships, by the extra that installs them: a missing one is
named with its ``pip install`` line instead of argparse's 'invalid choice'."""


class Command(Protocol):
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def installed() -> Mapping[str, Command]:
    """The commands of the installed distributions' ``taskfleet.commands`` entry points, by
    name; one that cannot be loaded is left out (its extra is then named when it is asked
    for: :func:`missing`)."""
    from importlib.metadata import entry_points

    found: dict[str, Command] = {}
    for entry in entry_points(group=GROUP):
        try:
            found.setdefault(entry.name, entry.load())
        except (ImportError, AttributeError):  # its package half installed, or stale
            continue
    return found


def missing(name: str) -> str | None:
    """What to install for a command of this distribution that is not installed, or None."""
    extra = EXTRA_OF.get(name)
    if extra is None:
        return None
    return f"'taskfleet {name}' needs the {extra} extra: pip install 'taskfleet[{extra}]'"

"""The explicit opt-outs: the only reasons a test may skip (tests/conftest.py fails
every other skip)."""

from __future__ import annotations

import os

import pytest

OPT_OUTS = {"TASKFLEET_REAL_NODE": "0", "TASKFLEET_DEPS": "lowest"}
"""The only reasons a test may skip: a part the run was told to leave out (variable and
the value that turns it off). Any other skip is a failure. TASKFLEET_DEPS=lowest is set
by hack/lowest.sh, whose virtualenv is not the lock and has no benchmark peers."""


def skip_for_opt_out(variable: str, what: str) -> None:
    """Skip the calling test when ``variable`` turns ``what`` off; otherwise return."""
    if os.environ.get(variable) == OPT_OUTS[variable]:
        pytest.skip(f"{what} is off ({variable}={OPT_OUTS[variable]})")


def allowed_skip(reason: str) -> bool:
    return any(f"({var}={value})" in reason and os.environ.get(var) == value
               for var, value in OPT_OUTS.items())

"""The Redis ACL rule (taskfleet.acl) against what the code sends: the commands its Lua
scripts call, the keys and channels it names, and docs/security.md's quote of it."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from taskfleet import acl, keys, scripts
from taskfleet_operator.wakeups import PATTERN as OPERATOR_WAKE_PATTERN

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_the_lua_scripts_call_is_allowed() -> None:
    source = Path(scripts.__file__).read_text()
    called = {c.lower() for c in re.findall(r"redis\.call\('([A-Za-z]+)'", source)}
    assert called, "no redis.call found: has the scripts module changed its style?"
    assert called - set(acl.COMMANDS) == set()


def test_every_key_and_channel_is_within_the_rule() -> None:
    qk = keys.QueueKeys("video-transcode")
    named = [*qk.all_keys(), qk.schedule_state("hourly"), qk.tick_claim("hourly", 1),
             keys.result_key("t1"), keys.state_key("t1"), keys.worker_key("w1"),
             keys.WORKERS_KEY]
    assert [k for k in named if not fnmatch.fnmatchcase(k, acl.KEYS)] == []
    assert fnmatch.fnmatchcase(qk.wake_channel, acl.WAKE_CHANNELS)


def test_the_operators_wake_pattern_is_the_rules_channel_pattern() -> None:
    # PSUBSCRIBE patterns are compared literally with the user's channel patterns
    assert OPERATOR_WAKE_PATTERN == acl.WAKE_CHANNELS


def test_the_security_page_quotes_the_rule() -> None:
    assert acl.setuser_command() in (ROOT / "docs" / "security.md").read_text()

"""The chaos run's counting (bench/faults/): what is lost, what ran twice, what the
README's promises make of a run's phases."""

from __future__ import annotations

from collections import Counter

from bench.faults.partition import notable_lines
from bench.faults.summary import fault_summary, promises
from bench.faults.traffic import Sent, tally


def test_a_task_acknowledged_and_never_run_is_lost_and_a_second_run_a_duplicate() -> None:
    sent = Sent(acknowledged={0, 1, 2, 3}, resent={3}, not_sent={4})
    result = tally(Counter({0: 1, 1: 3, 3: 2, 4: 1}), sent, tasks=5)
    assert result["lost"] == 1 and result["lost_indices"] == [2]
    assert result["duplicates"] == 3
    assert result["duplicates_of_resent_tasks"] == 1
    assert result["landed_despite_failed_send"] == 1
    assert (result["sent"], result["not_sent"], result["runs"]) == (4, 1, 7)


def test_a_send_given_up_on_is_not_a_lost_task() -> None:
    result = tally(Counter({0: 1}), Sent(acknowledged={0}, not_sent={1}), tasks=2)
    assert result["lost"] == 0 and result["not_sent"] == 1


def phase(**figures: object) -> dict[str, object]:
    return {"lost": 0, "duplicates_within_bound": True, "sigterm_exit_codes": [0],
            "pods_resumed": True, **figures}


def test_promises_hold_when_every_phase_keeps_them() -> None:
    phases = {"worker_kills": phase(), "redis_pause": phase(),
              "control_plane": {"skipped": "--short"}}
    assert promises(phases) == {"nothing_lost": True, "duplicates_within_bound": True,
                                "sigterm_exit_0": True, "workers_resume_after_faults": True}


def test_everysec_losses_are_redis_s_to_own_but_a_bad_exit_code_breaks_a_promise() -> None:
    phases = {"redis_restart_everysec": phase(lost=3), "partition": phase(
        sigterm_exit_codes=[0, None], duplicates_within_bound=False)}
    assert promises(phases) == {"nothing_lost": True, "duplicates_within_bound": False,
                                "sigterm_exit_0": False, "workers_resume_after_faults": True}


def test_the_control_plane_s_ticks_are_a_promise_of_their_own() -> None:
    assert promises({"control_plane": {"schedule": {"exactly_once": False}}})[
        "ticks_exactly_once"] is False


def test_the_table_names_each_phase_s_fault() -> None:
    kills = {"sigkills": [{}, {}], "sigterms": [{"reason": "scale-down at 1.00s"},
                                                {"reason": "end of phase"}]}
    assert fault_summary("worker_kills", kills) == "2 KILL 1 TERM"
    assert fault_summary("redis_restart_always", {"down_s": 1.234}) == "crash 1.2s"
    assert fault_summary("redis_pause", {"paused_s": 3.85}) == "STOP 3.9s"
    assert fault_summary("partition", {"link_down_s": 4.0}) == "cut 4.0s"


def test_a_pod_s_notable_lines_are_its_first_and_last_warnings_and_errors() -> None:
    log = "\n".join([f"t WARNING w{i}" for i in range(10)] + ["t INFO fine"]
                    + [f"t ERROR e{i}" for i in range(10)])
    lines = notable_lines(log, limit=4)
    assert lines == ["t WARNING w0", "t WARNING w1", "t ERROR e8", "t ERROR e9"]
    assert notable_lines("t INFO serving\nt WARNING lost the broker") == \
        ["t WARNING lost the broker"]

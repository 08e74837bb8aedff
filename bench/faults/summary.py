"""The chaos run's figures: what the README promises, phase by phase, and the table the
run prints."""

from __future__ import annotations

from typing import Any


def promises(phases: dict[str, Any]) -> dict[str, bool]:
    """What the README promises, phase by phase (everysec's losses are Redis's to own)."""
    ran = {k: v for k, v in phases.items() if isinstance(v, dict) and "lost" in v}
    no_loss = ("worker_kills", "redis_restart_always", "redis_pause", "partition")
    codes = [c for v in ran.values() for c in v.get("sigterm_exit_codes", [])]
    out = {"nothing_lost": all(ran[k]["lost"] == 0 for k in no_loss if k in ran),
           "duplicates_within_bound": all(v.get("duplicates_within_bound", True)
                                          for v in ran.values()),
           "sigterm_exit_0": all(c == 0 for c in codes),
           "workers_resume_after_faults": all(v.get("pods_resumed", True)
                                              for v in ran.values())}
    cp = phases.get("control_plane")
    if isinstance(cp, dict) and "schedule" in cp:
        out["ticks_exactly_once"] = bool(cp["schedule"]["exactly_once"])
    return out


def print_table(results: dict[str, Any]) -> None:
    phases = results["phases"]
    print()
    print(f"{'phase':<26}{'sent':>6}{'runs':>7}{'lost':>6}{'dup':>5}{'bound':>7}"
          f"{'faults':>18}{'drain s':>9}")
    for name, r in phases.items():
        if name == "control_plane" or not isinstance(r, dict):
            continue
        if "skipped" in r:
            print(f"{name:<26}  skipped: {r['skipped']}")
            continue
        bound = r.get("duplicate_bound")
        print(f"{name:<26}{r['sent']:>6}{r['runs']:>7}{r['lost']:>6}{r['duplicates']:>5}"
              f"{'-' if bound is None else bound:>7}{fault_summary(name, r):>18}"
              f"{r['drain_after_last_fault_s'] or float('nan'):>9.2f}")
    cp = phases.get("control_plane")
    if isinstance(cp, dict) and "api_server_restart" in cp:
        a, b, s = cp["api_server_restart"], cp["operator_failover"], cp["schedule"]
        print()
        print(f"API server + etcd down {a['api_down_s']:.1f}s: Deployment at {a['target']} "
              f"{seconds(a['replicas_at_target_after_api_back_s'])} after the API was back, "
              f"{a['target']} ready {seconds(a['ready_replicas_at_target_after_api_back_s'])}")
        print(f"active operator killed at {b['replicas_when_killed']} replicas: the standby "
              f"had it at {b['target']} {seconds(b['replicas_at_target_after_kill_s'])} later, "
              f"{b['target']} ready {seconds(b['ready_replicas_at_target_after_kill_s'])}")
        print(f"schedule * * * * *: tasks per tick {s['tasks_per_tick']}, sent seconds after "
              f"the tick {s['sent_after_tick_s']}; exactly once: {s['exactly_once']}")
    elif cp is not None:
        print(f"\ncontrol plane: {cp}")
    print()
    for name, ok in results["promises"].items():
        print(f"{name:<30}{'yes' if ok else 'NO'}")


def seconds(value: float | None) -> str:
    return "never (timed out)" if value is None else f"{value:.2f}s"


def fault_summary(name: str, r: dict[str, Any]) -> str:
    if name == "worker_kills":
        terms = sum(1 for s in r["sigterms"] if s["reason"] != "end of phase")
        return f"{len(r['sigkills'])} KILL {terms} TERM"
    if name.startswith("redis_restart"):
        return f"crash {r['down_s']:.1f}s"
    if name == "redis_pause":
        return f"STOP {r['paused_s']:.1f}s"
    if name == "partition":
        return f"cut {r['link_down_s']:.1f}s"
    return ""


def summary_line(r: dict[str, Any]) -> str:
    if "lost" in r:
        return f"sent {r['sent']}, lost {r['lost']}, duplicates {r['duplicates']}"
    return ", ".join(f"{k}" for k in r)

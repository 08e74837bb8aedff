"""`make demo`: the video site on a laptop, with no cluster and nothing running.

Builds the images (hack/images.sh, cached), starts a local redis-server and the
local Kubernetes control plane with its real node (containerd and a kubelet),
loads the images into the node, installs the CRDs, runs the operator, applies
this example, and plays a burst of uploads through the web tier's own enqueue
code. Every worker is a real container of the example's image on the real
node. The screen shows queue depth, in-flight, desired and ready replicas per
pool as the transcoder pool goes from zero up and back down, and the time from
the burst to the first task running in a container that did not exist before;
at the end a PNG chart is written and everything is cleaned up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from web import app as web  # this directory: run as a script, it is sys.path[0]

from taskfleet import App, queue_stats
from testenv.cluster import Cluster
from testenv.images import EXAMPLE_IMAGE, oci_archives
from testenv.node import RealNode
from testenv.operator import OperatorProcess, crds_applied
from testenv.redis_server import RedisServer, free_port
from testenv.waiting import wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

NS = "video-site"
POOLS = ("transcoder", "default")
QUEUES = ("transcode", "default", "reports")
# Shorter windows than production, so the demo comes back to zero in a minute.
DEMO_SCALING = {"scaleToZeroAfterSeconds": 8, "pollSeconds": 1,
                "scaleDown": {"stabilizationSeconds": 5}}


def manifests(redis_url: str, node: RealNode, seconds_per_1080p: float
              ) -> list[dict[str, Any]]:
    """The example's queues and pools with the local-only values: the local Redis, and
    the workers on the real node's host network (Redis is on loopback) from the image
    loaded into its containerd."""
    docs: list[dict[str, Any]] = []
    for name in ("10-queues.yaml", "20-pools.yaml"):
        docs += [d for d in yaml.safe_load_all((HERE / name).read_text()) if d]
    for d in docs:
        if d["kind"] == "TaskQueue":
            d["spec"]["redis"]["url"] = redis_url
        if d["kind"] == "WorkerPool":
            spec = node.place_pool(d["spec"])
            spec["image"] = EXAMPLE_IMAGE  # as imported into the node's containerd
            spec["env"] = [{"name": "TRANSCODE_SECONDS_PER_1080P",
                            "value": str(seconds_per_1080p)}]
            spec["terminationGracePeriodSeconds"] = 30
            spec["autoscaling"].update(DEMO_SCALING)
    return docs


def _pool_at_zero(cluster: Cluster) -> bool:
    """The transcoder pool's Deployment exists at zero: the burst meets an empty pool."""
    d = cluster.get("deployment", "transcoder", NS)
    return d is not None and d["spec"]["replicas"] == 0


def observe(cluster: Cluster, app: App) -> dict[str, tuple[int, int]]:
    """queue:NAME -> (ready, in flight); pool:NAME -> (desired, ready replicas)."""
    stats = queue_stats(app.redis, QUEUES)
    row = {f"queue:{q}": (s.ready, s.in_flight) for q, s in stats.items()}
    for wp in cluster.list("workerpools", NS):
        st = wp.get("status") or {}
        row[f"pool:{wp['metadata']['name']}"] = (st.get("desiredReplicas", 0),
                                                 st.get("readyReplicas", 0))
    return row


def line(t: float, row: dict[str, tuple[int, int]]) -> str:
    q, d = row["queue:transcode"], row["queue:default"]
    tp, dp = row.get("pool:transcoder", (0, 0)), row.get("pool:default", (0, 0))
    return (f"{t:6.1f}s | transcode ready {q[0]:3d} in-flight {q[1]:3d} | transcoder "
            f"desired {tp[0]:2d} ready {tp[1]:2d} | default ready {d[0]:3d} in-flight "
            f"{d[1]:2d} | default pool desired {dp[0]} ready {dp[1]}")


def chart(samples: list[tuple[float, dict[str, tuple[int, int]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s[0] for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(t, [s[1]["queue:transcode"][0] for s in samples], label="transcode ready")
    top.plot(t, [s[1]["queue:transcode"][1] for s in samples], label="transcode in flight")
    top.plot(t, [sum(s[1]["queue:default"]) for s in samples],
             label="default ready + in flight")
    top.set_ylabel("tasks")
    top.legend(loc="upper right")
    top.set_title("taskfleet demo: the transcoder pool follows its queue")
    for pool in POOLS:
        key = "pool:" + pool
        bottom.step(t, [s[1].get(key, (0, 0))[0] for s in samples], where="post",
                    label=f"{pool} desired")
        bottom.step(t, [s[1].get(key, (0, 0))[1] for s in samples], where="post",
                    linestyle="--", label=f"{pool} ready")
    bottom.set_ylabel("replicas")
    bottom.yaxis.get_major_locator().set_params(integer=True)
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--seconds-per-1080p", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=ROOT / "demo-output")
    parser.add_argument("--dashboard-port", type=int, default=0,
                        help="port of the web dashboard on 127.0.0.1 (default: a free one)")
    args = parser.parse_args()
    if os.environ.get("TASKFLEET_REAL_NODE") == "0":
        print("demo: its workers are containers on the real node, which TASKFLEET_REAL_NODE=0 "
              "turns off; unset it to run the demo", file=sys.stderr)
        return 2
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    print("building the images (cached after the first time) ...", flush=True)
    archives = oci_archives()
    print("starting redis-server and the local control plane with its real node ...",
          flush=True)
    redis_server = RedisServer().start()
    cluster = Cluster(name="taskfleet-demo").up()
    operator = None
    try:
        node = RealNode(cluster)
        for archive in archives.values():
            node.load_image(archive)
        crds_applied(cluster)
        cluster.kubectl("create", "namespace", NS)
        operator = OperatorProcess(cluster, NS, args.out / "operator.log")
        dashboard_port, metrics_port = args.dashboard_port or free_port(), free_port()
        operator.argv += ["--dashboard-port", str(dashboard_port), "--dashboard-address",
                          "127.0.0.1", "--metrics-port", str(metrics_port),
                          "--metrics-address", "127.0.0.1"]
        operator.start()
        dashboard = f"http://127.0.0.1:{dashboard_port}/"
        wait_for("the operator's dashboard", lambda: _answers(dashboard), timeout=60,
                 describe=operator.log)
        print(f"dashboard: {dashboard} (open it while the demo runs; metrics on "
              f"http://127.0.0.1:{metrics_port}/metrics)", flush=True)
        cluster.apply(yaml.safe_dump_all(manifests(redis_server.url, node,
                                                   args.seconds_per_1080p)), namespace=NS)
        app = App(redis_server.url)
        web.app.configure(redis_server.url)
        print(f"applied examples/video-site ({', '.join(POOLS)} pools); operator log in "
              f"{args.out / 'operator.log'}\n", flush=True)

        start = time.monotonic()
        samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
        sent: list[str] = []
        phase = "warm-up"
        peak = dict.fromkeys(POOLS, 0)
        burst_at: float | None = None
        first_task: float | None = None
        while True:
            t = time.monotonic() - start
            if phase == "warm-up" and t > 3 and _pool_at_zero(cluster):
                print(f"--- a burst of {args.uploads} uploads (2 renditions each) and "
                      f"{args.uploads} welcome mails ---", flush=True)
                burst_at = time.monotonic()
                for i in range(args.uploads):
                    sent += web.enqueue_upload(f"video-{i:03d}")
                    sent.append(web.welcome(f"user-{i:03d}"))
                phase = "burst"
            row = observe(cluster, app)
            if burst_at is not None and first_task is None and row["queue:transcode"][1]:
                first_task = time.monotonic() - burst_at
                print(f"--- {first_task:.1f}s from the burst to the first transcode running "
                      "in a new container ---", flush=True)
            samples.append((t, row))
            print(line(t, row), flush=True)
            for pool in POOLS:
                peak[pool] = max(peak[pool], row.get("pool:" + pool, (0, 0))[0])
            done = phase == "burst" and all(app.AsyncResult(i).ready() for i in sent[-3:])
            if done and row["queue:transcode"] == (0, 0) and \
                    row.get("pool:transcoder") == (0, 0):
                phase = "finished"
                break
            if t > 300:
                print("demo timed out", flush=True)
                break
            time.sleep(0.5)

        results = [app.AsyncResult(i) for i in sent]
        succeeded = sum(1 for r in results if r.successful())
        png = args.out / "taskfleet-demo.png"
        chart(samples, png)
        tq = cluster.get("taskqueue", "reports", NS) or {}
        nxt = ((tq.get("status") or {}).get("schedules") or [{}])[0].get("nextScheduleTime")
        print()
        print(f"tasks sent {len(sent)}, done {succeeded}, lost {len(sent) - succeeded}")
        print(f"peak replicas: transcoder {peak['transcoder']}, default {peak['default']}")
        if first_task is not None:
            print(f"burst to first task in a new container: {first_task:.1f}s")
        print(f"hourly report next fires at {nxt} (exactly once, by the operator)")
        print(f"chart: {png}")
        return 0 if succeeded == len(sent) and phase == "finished" else 1
    finally:
        if operator is not None:
            operator.stop()
        # Workers drain on SIGTERM from the kubelet before the node goes.
        cluster.kubectl("delete", "namespace", NS, "--timeout=90s", check=False)
        cluster.down()
        redis_server.close()


if __name__ == "__main__":
    # SIGTERM (a CI timeout, kill) still runs the cleanup in main's finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    raise SystemExit(main())

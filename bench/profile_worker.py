"""Where an inline worker's CPU goes per task: cProfile of one worker process
running N tasks of the shared body (one INCR each) that wait in the queue.

    python bench/profile_worker.py [--tasks N] [--top K] [--no-result]

Prints CPU microseconds per task (the process's own, from resource usage) and
the functions with the most cumulative and own time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import threading
import time

import redis

from bench.peers import body
from taskfleet.worker import Worker, WorkerSettings
from testenv.redis_server import RedisServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-result", action="store_true")
    parser.add_argument("--no-profile", action="store_true",
                        help="CPU per task only, without the profiler's own overhead")
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        os.environ[body.URL_ENV] = server.url
        from bench.peers.taskfleet_incr import app

        app.configure(server.url)
        task = "bench.incr_no_result" if args.no_result else "bench.incr"
        client = redis.Redis.from_url(server.url)
        app.send_many(task, [()] * args.tasks, queue="bench")
        worker = Worker(app, WorkerSettings(queues=["bench"], pool="inline"))

        def stop_when_done() -> None:
            while int(client.get(body.COUNTER) or 0) < args.tasks:
                time.sleep(0.01)
            worker.stop()

        threading.Thread(target=stop_when_done, daemon=True).start()
        profiler = None if args.no_profile else cProfile.Profile()
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        worker.run()
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"{args.tasks} tasks in {wall:.2f} s: {args.tasks / wall:,.0f} tasks/s, "
              f"{cpu / args.tasks * 1e6:.0f} us CPU per task (whole process)")
        if profiler:
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(args.top)
            stats.sort_stats("tottime").print_stats(args.top)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

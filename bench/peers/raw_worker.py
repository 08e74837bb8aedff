"""The raw ceiling: taskfleet's Redis operations per task in a bare redis-py loop.

It runs what a taskfleet inline worker sends (FETCH of up to PREFETCH + 1 tasks, then
one STORE_RESULT per task and the batched ack, pipelined with the next
FETCH), with no framework around it: no decoding, no task lookup, no signal
handling, no heartbeats, no lease keeping. Each task's body is the shared one
(bench/peers/body.py): one INCR, a round trip of its own as in every system.
"""

from __future__ import annotations

import json
import sys

import redis

from bench.peers import body
from taskfleet import keys, scripts
from taskfleet.worker import PREFETCH


def main(url: str, queue: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    fetch = client.register_script(scripts.FETCH)
    store = client.register_script(scripts.STORE_RESULT)
    qk = keys.QueueKeys(queue)
    fetch_keys = qk.all_keys()
    done: list[str] = []
    result = json.dumps({"status": "SUCCESS", "result": None})
    while True:
        pipe = client.pipeline(transaction=False)
        for task_id in done:
            store(keys=[keys.result_key(task_id), keys.state_key(task_id)],
                  args=[result, 86_400_000], client=pipe)
        if done:
            pipe.hdel(qk.messages, *done)
            pipe.zrem(qk.leases, *done)
            pipe.hdel(qk.expiries, *done)
        fetch(keys=fetch_keys, args=[PREFETCH + 1, 30000, 5, queue, 10_000], client=pipe)
        got = pipe.execute()[-1]
        done = [got[i] for i in range(0, len(got), 3)]
        for _ in done:
            client.incr(body.COUNTER)
        if not done:
            client.blpop(["bench:raw:never"], timeout=0.01)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

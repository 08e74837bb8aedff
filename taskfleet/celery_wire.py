"""Celery's wire format on Redis, so a taskfleet worker takes tasks that Celery clients send.

Checked against Celery 5.7.0 and kombu 5.7.0:

- Queues: kombu's Redis transport LPUSHes a JSON envelope onto the queue's list or a
  priority sub-list ``<queue>\\x06\\x16<step>`` (``Channel._q_for_pri``, ``Channel.sep``,
  ``PRIORITY_STEPS``); its consumers BRPOP the lists in step order, so the oldest
  message is at the right end and step 0 is served first.
- Messages (task protocol 2, ``celery/app/amqp.py``, ``as_task_v2``): the envelope's
  ``headers`` carry ``task``, ``id``, ``retries``, ``eta``, ``expires``; its ``body``
  (base64 when ``properties.body_encoding`` says so) is the serialized
  ``[args, kwargs, {callbacks, errbacks, chain, chord}]``; ``content-type`` names the
  serializer. Only ``application/json`` is decoded: anything else (pickle above all) is
  dead-lettered with the reason and never deserialized.
- Results (the Redis result backend, ``celery/backends/redis.py``, ``RedisBackend._set``;
  ``celery/backends/base.py``, ``_store_result``, ``_get_result_meta``): the JSON meta
  ``{status, result, traceback, children, date_done, task_id}`` under
  ``celery-task-meta-<id>`` with an expiry, and PUBLISHed on a channel of the same name,
  which a waiting ``AsyncResult.get()`` is subscribed to (``ResultConsumer``).

Taking is one Lua script (ADOPT) that moves messages, in Celery's order, into the
taskfleet queue of the same name (its messages hash and a ready list), so from then on
the task has taskfleet's lease and at-least-once guarantees; the worker's FETCH runs in
the same pipelined round trip and leases them.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from bisect import bisect
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import MessageError
from .keys import QueueKeys
from .message import Message
from .scripts import _DEAD_LETTER

if TYPE_CHECKING:
    from .records import ResultRecord

PRIORITY_SEPARATOR = "\x06\x16"
"""kombu's ``Channel.sep`` between a queue's name and a priority step."""
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
"""kombu's ``PRIORITY_STEPS``."""
UNACKED = "unacked"
"""kombu's ``Channel.unacked_key``: delivery tag -> [message, exchange, routing key]."""
RESULT_PREFIX = "celery-task-meta-"
"""The Redis result backend's ``task_keyprefix``."""
ENVELOPE_START = '{"body"'
"""How kombu's JSON envelope begins (``json.dumps`` of a dict whose first key is body);
a taskfleet message begins with ``{"v"``, so telling them apart costs one comparison."""
ADOPTED_BAND = 1
"""The taskfleet ready band adopted Celery messages wait in (normal)."""
NOT_CARRIED = ("callbacks", "errbacks", "chain", "chord")
"""Canvas fields of a message body that a taskfleet worker does not run."""


def priority_lists(queue: str, steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS) -> list[str]:
    """The lists holding a Celery queue's ready messages, in the order Celery serves them."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"
            for step in sorted(set(steps))]


def priority_list(queue: str, priority: int,
                  steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS) -> str:
    """The list a Celery client puts a message of this priority on (kombu's ``_put``:
    ``_get_message_priority``, ``_q_for_pri``, ``priority``: the step at or below it)."""
    ordered = sorted(set(steps))
    step = ordered[bisect(ordered, max(0, min(priority, 9))) - 1]
    return queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"


def envelope_priority(text: str) -> int:
    """The priority kombu reads from an envelope's properties (0 when it has none)."""
    try:
        properties = json.loads(text).get("properties")
        return int(properties["priority"])
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
        return 0


def envelope(message: Message, queue: str) -> str:
    """kombu's JSON envelope of a Celery task protocol 2 message carrying ``message``'s
    task, id, arguments and retries, as Celery's ``send_task`` with the JSON serializer
    writes it (``as_task_v2``, kombu's ``prepare_message`` and Redis ``_put``), so that a
    Celery worker, or a taskfleet worker's ADOPT, takes it."""
    payload = [message.args, message.kwargs,
               {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    headers = {"lang": "py", "task": message.task, "id": message.id, "shadow": None,
               "eta": None, "expires": None, "group": None, "group_index": None,
               "retries": message.retries, "timelimit": [None, None],
               "root_id": message.id, "parent_id": None,
               "argsrepr": repr(message.args)[:1024], "kwargsrepr": repr(message.kwargs)[:1024],
               "origin": "taskfleet", "ignore_result": False}
    properties = {"correlation_id": message.id, "reply_to": "", "delivery_mode": 2,
                  "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
                  "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())}
    body = base64.b64encode(json.dumps(payload).encode()).decode()
    return json.dumps({"body": body, "content-encoding": "utf-8",
                       "content-type": "application/json", "headers": headers,
                       "properties": properties})


def result_key(task_id: str) -> str:
    """Where Celery's Redis result backend keeps (and publishes) a task's result."""
    return f"{RESULT_PREFIX}{task_id}"


def priority_steps_option(queue: str, steps: Sequence[int]) -> str:
    """``--celery-priority-steps``'s value for one queue: ``films=0,5,9``."""
    return f"{queue}={','.join(str(step) for step in sorted(set(steps)))}"


def parse_priority_steps_option(value: str) -> tuple[str, tuple[int, ...]]:
    """(queue, steps) from ``--celery-priority-steps``'s value; ValueError saying what is
    wrong."""
    queue, equals, steps = value.partition("=")
    try:
        parsed = tuple(sorted({int(step) for step in steps.split(",")}))
    except ValueError:
        parsed = ()
    if not queue or not equals or not parsed or not all(0 <= s <= 255 for s in parsed):
        raise ValueError("must be QUEUE=STEPS, the steps from 0 to 255, e.g. films=0,3,6,9")
    return queue, parsed


# ADOPT moves up to `want` messages of a Celery queue (oldest first: the right end of
# each priority list, the lists in serving order) into the taskfleet queue of the same
# name: the body into `messages` under the Celery task id (headers.id; a message without
# one gets `celery-<time>-<n>` and is dead-lettered by the worker's decoder), the id onto
# the adopted band's ready list. An id already stored is not stored twice. A message
# over the largest size is not decoded: it goes to the dead-letter list whole, with the
# reason. Returns how many moved. KEYS and ARGV as adopt_call gives them.
ADOPT = """
local messages, ready, dead, dead_trimmed, settings = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5]
local celery_lists = {unpack(KEYS, 6)}
local want, queue, band = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local max_bytes, dead_limit = tonumber(ARGV[4]), ARGV[5]
""" + _DEAD_LETTER + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moved = 0
for _, list in ipairs(celery_lists) do
  while moved < want do
    local raw = redis.call('RPOP', list)
    if not raw then break end
    if max_bytes and #raw > max_bytes then
      push_dead(dead_record('celery-' .. now .. '-' .. moved, queue,
        'Celery message of ' .. #raw .. ' bytes, over the limit of ' .. max_bytes
          .. ' (max_message_bytes): refused undecoded', now, raw), dead_limit)
    else
      local ok, envelope = pcall(cjson.decode, raw)
      local id = nil
      if ok and type(envelope) == 'table' and type(envelope.headers) == 'table'
         and type(envelope.headers.id) == 'string' and envelope.headers.id ~= '' then
        id = envelope.headers.id
      else
        id = 'celery-' .. now .. '-' .. moved
      end
      if redis.call('HSETNX', messages, id, band .. raw) == 1 then
        redis.call('RPUSH', ready, now .. ':' .. id)
      end
    end
    moved = moved + 1
  end
end
return moved
"""


def adopt_call(queue: str, steps: Sequence[int], want: int, max_bytes: int,
               dead_letter_limit: int) -> tuple[list[str], list[str | int]]:
    """ADOPT's KEYS and ARGV: the taskfleet queue's messages hash, the adopted band's ready
    list and the keys of its dead-letter list (scripts._DEAD_LETTER), then the Celery
    queue's priority lists in serving order; how many to move, the queue's name, the
    band (a stored body's first byte), the largest message taken (bytes) and the
    dead-letter limit."""
    qk = QueueKeys(queue)
    return ([qk.messages, qk.ready(ADOPTED_BAND), qk.dead, qk.dead_trimmed, qk.settings,
             *priority_lists(queue, tuple(steps))],
            [want, queue, ADOPTED_BAND, max_bytes, dead_letter_limit])


def is_envelope(text: str) -> bool:
    return text.startswith(ENVELOPE_START)


def decode(text: str) -> Message:
    """A Message from kombu's envelope of a Celery protocol 2 task; MessageError naming
    what is wrong (and what to change on the Celery side) otherwise."""
    try:
        envelope = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MessageError(f"Celery message is not valid JSON ({exc})") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("headers"), dict):
        raise MessageError("Celery message without headers: only task protocol 2 (Celery 4 "
                           "and later) is taken")
    headers: dict[str, Any] = envelope["headers"]
    content_type = envelope.get("content-type")
    if content_type != "application/json":
        raise MessageError(f"Celery message serialized as {content_type!r}: refused and never "
                           "deserialized (taskfleet takes JSON only); set "
                           "task_serializer='json' on the client")
    for name in ("task", "id"):
        if not isinstance(headers.get(name), str) or not headers[name]:
            raise MessageError(f"Celery message header {name!r} must be a non-empty string "
                               "(task protocol 2)")
    body = envelope.get("body")
    if not isinstance(body, str):
        raise MessageError("Celery message body must be a string (kombu's envelope)")
    properties = envelope.get("properties") or {}
    try:
        if isinstance(properties, dict) and properties.get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True)
        payload = json.loads(body)
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise MessageError(f"Celery message body is not base64 JSON ({exc})") from exc
    if not (isinstance(payload, list) and len(payload) == 3 and isinstance(payload[0], list)
            and isinstance(payload[1], dict)):
        raise MessageError("Celery message body must be [args, kwargs, embed] (protocol 2)")
    embed = payload[2] if isinstance(payload[2], dict) else {}
    carried = [name for name in NOT_CARRIED if embed.get(name)]
    if carried:
        raise MessageError(f"Celery {'/'.join(carried)} are not carried over to taskfleet "
                           "workers; send this task to a Celery worker, or without them")
    if headers.get("eta") or headers.get("expires"):
        raise MessageError("Celery eta/countdown/expires are not carried over to taskfleet "
                           "workers; send this task to a Celery worker, or without them")
    retries = headers.get("retries") or 0
    delivery = properties.get("delivery_info") if isinstance(properties, dict) else None
    queue = delivery.get("routing_key") if isinstance(delivery, dict) else None
    return Message(id=headers["id"], task=headers["task"], queue=str(queue or ""),
                   args=payload[0], kwargs=payload[1],
                   retries=retries if isinstance(retries, int) else 0,
                   enqueued_at=time.time(), celery=True)


def result_meta(task_id: str, record: ResultRecord) -> str:
    """Celery's result meta for a taskfleet result record."""
    done = datetime.fromtimestamp(record.date_done or time.time(), UTC)
    meta: dict[str, Any] = {"status": record.status, "traceback": record.traceback,
                            "children": [], "date_done": done.isoformat(),
                            "task_id": task_id}
    if record.status == "SUCCESS":
        meta["result"] = record.result
    else:  # Celery rebuilds the exception from these (exception_to_python)
        meta["result"] = {"exc_type": "Exception", "exc_module": "builtins",
                          "exc_message": [str(record.error or "task failed")]}
    return json.dumps(meta)

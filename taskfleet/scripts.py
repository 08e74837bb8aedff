"""Lua scripts of the native queue protocol.

Each script touches the keys of one queue only (keys.QueueKeys.all_keys: the
ready bands most urgent first, messages, leases, delayed, dead), so each stays
legal on Redis Cluster; each opens by naming its KEYS and ARGV. Times are the
server's (TIME), so worker clocks never disagree about a lease. A stored message
is ``<band digit><json>`` (broker.stored_body); the digit lets a script requeue a
task into its band without decoding JSON.
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The keys of one queue, named; every script that takes all_keys() opens with it.
_QUEUE_KEYS = """
local urgent, normal, bulk = KEYS[1], KEYS[2], KEYS[3]
local messages, leases, delayed, dead = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local dead_trimmed, settings, expiries = KEYS[8], KEYS[9], KEYS[10]
local bands = {urgent, normal, bulk}
local function band_list(band) return bands[3 - tonumber(band)] end
-- The ready list a stored body belongs in, or nil when its first byte is not a band
-- digit (written by something else than taskfleet): such a body is dead-lettered.
local function list_of(body)
  local band = tonumber(string.sub(body, 1, 1))
  if band == nil or band < 0 or band > 2 then return nil end
  return band_list(band)
end
"""

# dead_record(): a dead-letter record as records.DeadLetterRecord decodes it (the same
# fields; failed_at in seconds from the server's ms). push_dead(): into the dead-letter
# list, newest first, capped at the queue's dead_letter_limit (its settings hash, written
# by the operator from TaskQueue.spec.deadLetterLimit; else the caller's default; 0: no
# cap). The oldest records go, and are counted.
_DEAD_LETTER = """
local function dead_record(id, queue, reason, now_ms, body)
  return cjson.encode({id = id, queue = queue, reason = reason, failed_at = now_ms / 1000,
                       body = body})
end
local function push_dead(record, default_limit)
  redis.call('LPUSH', dead, record)
  local limit = tonumber(redis.call('HGET', settings, 'dead_letter_limit') or default_limit)
  if limit and limit > 0 then
    local over = redis.call('LLEN', dead) - limit
    if over > 0 then
      redis.call('LTRIM', dead, 0, limit - 1)
      redis.call('INCRBY', dead_trimmed, over)
    end
  end
end
"""

# KEYS: all_keys(). ARGV: wake channel, then per message: id, band, stored body,
# due (ms; 0 = now). Tells idle workers when the queue goes from empty to not, and
# the operator also when the delayed set does (a pool at rest reads its queue only
# when told). An id already stored is skipped: a client that re-sends the script
# after a lost reply (redis-py retries) must not queue the same task twice.
ENQUEUE = _QUEUE_KEYS + _NOW + """
local wake_channel = ARGV[1]
local was_empty = redis.call('LLEN', urgent) + redis.call('LLEN', normal)
                  + redis.call('LLEN', bulk) == 0
local had_delayed = redis.call('EXISTS', delayed) == 1
local pushed, scheduled = 0, 0
-- Ready entries are pushed with one RPUSH per band, not one per message: a redis.call
-- costs about as much as the work it does here, and batches are mostly one band.
local entries = {{}, {}, {}}
for i = 2, #ARGV, 4 do
  local id, band, body, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  if redis.call('HSETNX', messages, id, body) == 1 then
    if due > now then
      redis.call('ZADD', delayed, due, id)
      scheduled = scheduled + 1
    else
      local list = entries[3 - tonumber(band)]
      list[#list + 1] = now .. ':' .. id
      pushed = pushed + 1
    end
  end
end
for i, list in ipairs(entries) do
  if #list > 0 then redis.call('RPUSH', bands[i], unpack(list)) end
end
if (was_empty and pushed > 0) or (not had_delayed and scheduled > 0) then
  redis.call('PUBLISH', wake_channel, pushed)
end
return pushed
"""

# KEYS: all_keys(). ARGV: how many, lease ms, redelivery limit (0: none), queue
# name, default dead-letter cap.
# Takes up to `want` tasks and leases them in the same atomic step, so a worker
# killed at any instant loses nothing. Before that it puts back the tasks of
# expired leases (a dead worker's) and promotes due delayed tasks. A task whose
# lease expired `limit` times killed its worker each time (a poison message: OOM,
# segfault); it goes to the dead-letter list instead of killing the next one.
# Entries it cannot parse (a ready entry without its `since:` prefix, a stored body
# without its band digit: written by something else) are dead-lettered with the
# reason instead of failing the script, so one bad entry never stops a queue.
# Returns a flat list: id, stored body, ready-since ms, ...
FETCH = _QUEUE_KEYS + _NOW + _DEAD_LETTER + """
local want, lease_ms, limit, queue = tonumber(ARGV[1]), tonumber(ARGV[2]),
                                     tonumber(ARGV[3]), ARGV[4]
local dead_limit = ARGV[5]
local function dead_letter(id, reason, body)
  push_dead(dead_record(id, queue, reason, now, body), dead_limit)
end
local function unparsable(id, body, what)
  dead_letter(id, what .. '; not delivered (was it written by something other than '
              .. 'taskfleet?)', body)
  redis.call('HDEL', messages, id)
  redis.call('HDEL', expiries, id)
end
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  redis.call('ZREM', leases, id)
  local body = redis.call('HGET', messages, id)
  if body then
    local lost = redis.call('HINCRBY', expiries, id, 1)
    local into = list_of(body)
    if into == nil then
      unparsable(id, body, 'stored body does not start with a priority band digit')
    elseif limit > 0 and lost >= limit then
      dead_letter(id, 'its worker died while running it ' .. lost .. ' times (crash, OOM '
                  .. 'kill, node loss); not delivered again', string.sub(body, 2))
      redis.call('HDEL', messages, id)
      redis.call('HDEL', expiries, id)
    else
      redis.call('LPUSH', into, now .. ':' .. id)
    end
  end
end
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 100)
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('ZREM', delayed, id)
  local body = redis.call('HGET', messages, id)
  if body then
    local into = list_of(body)
    if into == nil then
      unparsable(id, body, 'stored body does not start with a priority band digit')
    else
      redis.call('RPUSH', into, due[i + 1] .. ':' .. id)
    end
  end
end
local deadline = now + lease_ms
local out = {}
for _, band in ipairs(bands) do
  while #out < want * 3 do
    local entry = redis.call('LPOP', band)
    if not entry then break end
    local sep = string.find(entry, ':', 1, true)
    if sep == nil then
      dead_letter(entry, 'ready entry is not <ready-since ms>:<task id>; dropped from the '
                  .. 'ready list', entry)
    else
      local id = string.sub(entry, sep + 1)
      local body = redis.call('HGET', messages, id)
      if body then
        redis.call('ZADD', leases, deadline, id)
        out[#out + 1] = id
        out[#out + 1] = body
        out[#out + 1] = string.sub(entry, 1, sep - 1)
      end
    end
  end
end
return out
"""

# KEYS: leases. ARGV: lease ms, ids. Only leases still held are extended (XX):
# a lease that expired and was handed to another worker is not taken back.
EXTEND = _NOW + """
local leases = KEYS[1]
local deadline = now + tonumber(ARGV[1])
local kept = 0
for i = 2, #ARGV do
  kept = kept + redis.call('ZADD', leases, 'XX', 'CH', deadline, ARGV[i])
end
return kept
"""

# stats_of(): per-queue statistics, O(1) apart from two O(log n) counts on the
# delayed set. Delayed tasks already due count as ready: with a pool at zero no
# worker is there to promote them, and the autoscaler must still see them. A ready
# list's head it cannot parse adds no age (FETCH dead-letters it). Returns {ready,
# oldest ready-since ms or -1, in flight, delayed, dead, now ms (0 when nothing is
# ready or delayed: 10,000 idle queues need no clock), dead-letter records trimmed
# by the cap}.
_STATS_OF = """
local now = nil
local function stats_of(bands, leases, delayed, dead, dead_trimmed)
  -- Each band's length is kept so that only non-empty bands are asked for their head:
  -- most queues use one band, and a redis.call is most of this script's cost.
  local ready, lengths = 0, {}
  for i, band in ipairs(bands) do
    lengths[i] = redis.call('LLEN', band)
    ready = ready + lengths[i]
  end
  local leased, scheduled = redis.call('ZCARD', leases), redis.call('ZCARD', delayed)
  local dead_n = redis.call('LLEN', dead)
  local trimmed = tonumber(redis.call('GET', dead_trimmed) or 0)
  if ready == 0 and scheduled == 0 then return {0, -1, leased, 0, dead_n, 0, trimmed} end
  if now == nil then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local oldest = -1
  for i, band in ipairs(bands) do
    local head = lengths[i] > 0 and redis.call('LINDEX', band, 0)
    if head then
      local sep = string.find(head, ':', 1, true)
      local since = sep and tonumber(string.sub(head, 1, sep - 1))
      if since and (oldest < 0 or since < oldest) then oldest = since end
    end
  end
  local due = 0
  if scheduled > 0 then
    due = redis.call('ZCOUNT', delayed, '-inf', now)
    if due > 0 then
      ready = ready + due
      local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
      local since = tonumber(first[2])
      if oldest < 0 or since < oldest then oldest = since end
    end
  end
  return {ready, oldest, leased, scheduled - due, dead_n, now, trimmed}
end
"""

# STATS. KEYS: all_keys(). No ARGV. One queue's stats_of().
STATS = _QUEUE_KEYS + _STATS_OF + """
return stats_of(bands, leases, delayed, dead, dead_trimmed)
"""

# STATS_MANY. KEYS: per queue, QueueKeys.stats_keys() (3 ready bands, leases, delayed,
# dead, dead_trimmed). No ARGV. stats_of() of each, in order: on one server, 10,000
# queues cost 100 calls instead of 10,000 (each call has a fixed cost). Not on Redis
# Cluster, where the queues live in different slots.
STATS_MANY = _STATS_OF + """
local out = {}
for base = 0, #KEYS - 1, 7 do
  out[#out + 1] = stats_of({KEYS[base + 1], KEYS[base + 2], KEYS[base + 3]}, KEYS[base + 4],
                           KEYS[base + 5], KEYS[base + 6], KEYS[base + 7])
end
return out
"""

# The settle steps that touch several keys run as scripts so each is atomic.
# RETRY. KEYS: all_keys(). ARGV: id, stored body, due ms.
# Back to the delayed set with the new body.
RETRY = _QUEUE_KEYS + """
local id, body, due = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', messages, id, body)
redis.call('ZADD', delayed, due, id)
redis.call('ZREM', leases, id)
"""

# DEAD. KEYS: all_keys(). ARGV: id, record JSON (records.DeadLetterRecord), default
# dead-letter cap.
# Into the dead-letter list, out of everything else.
DEAD = _QUEUE_KEYS + _DEAD_LETTER + """
local id, record, dead_limit = ARGV[1], ARGV[2], ARGV[3]
push_dead(record, dead_limit)
redis.call('HDEL', messages, id)
redis.call('ZREM', leases, id)
redis.call('HDEL', expiries, id)
"""

# RETURN. KEYS: all_keys(). ARGV: id, band, ready-since ms, wake channel.
# Back to the front of its band, lease dropped, idle workers woken. Skipped
# when the lease is gone (it expired and another worker has it).
RETURN = _QUEUE_KEYS + """
local id, band, since, wake_channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('ZREM', leases, id) == 1 then
  if redis.call('LPUSH', band_list(band), since .. ':' .. id) == 1 then
    redis.call('PUBLISH', wake_channel, 1)
  end
end
"""

# STORE_RESULT. KEYS: result list, state key (one slot: both carry {task-id}).
# ARGV: result JSON, ttl ms. A rerun (at-least-once) replaces the earlier result.
STORE_RESULT = """
local result_list, state = KEYS[1], KEYS[2]
local result, ttl_ms = ARGV[1], ARGV[2]
redis.call('DEL', result_list, state)
redis.call('RPUSH', result_list, result)
redis.call('PEXPIRE', result_list, ttl_ms)
"""

# ENQUEUE_ONCE. KEYS: all_keys() plus the claim of one schedule tick.
# ARGV: wake channel, id, band, stored body, claim ttl ms. Claim and enqueue are
# one atomic step, so a tick is sent exactly once however many schedulers run
# and wherever one of them crashes. Returns the id of the tick's task (this
# caller's, or the one another scheduler sent).
ENQUEUE_ONCE = _QUEUE_KEYS + _NOW + """
local claim = KEYS[11]
local wake_channel, id, band, body, claim_ttl_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not redis.call('SET', claim, id, 'NX', 'PX', claim_ttl_ms) then
  return redis.call('GET', claim)
end
local was_empty = redis.call('LLEN', urgent) + redis.call('LLEN', normal)
                  + redis.call('LLEN', bulk) == 0
redis.call('HSET', messages, id, body)
redis.call('RPUSH', band_list(band), now .. ':' .. id)
if was_empty then redis.call('PUBLISH', wake_channel, 1) end
return id
"""

"""Lua scripts of the native queue protocol.

Each script touches the keys of one queue only (see keys.QueueKeys.all_keys for
their order: KEYS[1..3] ready bands most urgent first, KEYS[4] messages,
KEYS[5] leases, KEYS[6] delayed, KEYS[7] dead), so each stays legal on Redis
Cluster. Times are the server's (TIME), so worker clocks never disagree about
a lease. A stored message is ``<band digit><json>``; the digit lets a script
requeue a task into its band without decoding JSON.
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# ARGV: wake channel, then per message: id, band, stored body, due (ms; 0 = now).
ENQUEUE = _NOW + """
local was_empty = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
                  + redis.call('LLEN', KEYS[3]) == 0
local pushed = 0
for i = 2, #ARGV, 4 do
  local id, band, due = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 3])
  redis.call('HSET', KEYS[4], id, ARGV[i + 2])
  if due > now then
    redis.call('ZADD', KEYS[6], due, id)
  else
    redis.call('RPUSH', KEYS[3 - band], now .. ':' .. id)
    pushed = pushed + 1
  end
end
if was_empty and pushed > 0 then redis.call('PUBLISH', ARGV[1], pushed) end
return pushed
"""

# Takes up to ARGV[1] tasks and leases them for ARGV[2] ms in the same atomic
# step, so a worker killed at any instant loses nothing. Before that it puts
# back the tasks of expired leases (a dead worker's) and promotes due delayed
# tasks. A task whose lease expired ARGV[3] times (0: no limit) killed its
# worker each time (a poison message: OOM, segfault); it goes to the dead-letter
# list of queue ARGV[4] instead of killing the next one. KEYS[8]: expiry counts.
# Returns a flat list: id, stored body, ready-since ms, ...
FETCH = _NOW + """
local limit = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[5], id)
  local body = redis.call('HGET', KEYS[4], id)
  if body then
    local lost = redis.call('HINCRBY', KEYS[8], id, 1)
    if limit > 0 and lost >= limit then
      redis.call('LPUSH', KEYS[7], cjson.encode({id = id, queue = ARGV[4], failed_at = now / 1000,
        reason = 'its worker died while running it ' .. lost .. ' times (crash, OOM kill, '
                 .. 'node loss); not delivered again', body = string.sub(body, 2)}))
      redis.call('HDEL', KEYS[4], id)
      redis.call('HDEL', KEYS[8], id)
    else
      redis.call('LPUSH', KEYS[3 - tonumber(string.sub(body, 1, 1))], now .. ':' .. id)
    end
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 100)
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('ZREM', KEYS[6], id)
  local body = redis.call('HGET', KEYS[4], id)
  if body then
    redis.call('RPUSH', KEYS[3 - tonumber(string.sub(body, 1, 1))], due[i + 1] .. ':' .. id)
  end
end
local want = tonumber(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local out = {}
for b = 1, 3 do
  while #out < want * 3 do
    local entry = redis.call('LPOP', KEYS[b])
    if not entry then break end
    local sep = string.find(entry, ':', 1, true)
    local id = string.sub(entry, sep + 1)
    local body = redis.call('HGET', KEYS[4], id)
    if body then
      redis.call('ZADD', KEYS[5], deadline, id)
      out[#out + 1] = id
      out[#out + 1] = body
      out[#out + 1] = string.sub(entry, 1, sep - 1)
    end
  end
end
return out
"""

# KEYS[1] leases. ARGV: lease ms, ids. Only leases still held are extended (XX):
# a lease that expired and was handed to another worker is not taken back.
EXTEND = _NOW + """
local deadline = now + tonumber(ARGV[1])
local kept = 0
for i = 2, #ARGV do
  kept = kept + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, ARGV[i])
end
return kept
"""

# Per-queue statistics, O(1) apart from two O(log n) counts on the delayed set.
# Delayed tasks already due count as ready: with a pool at zero no worker is
# there to promote them, and the autoscaler must still see them.
# Returns {ready, oldest ready-since ms or -1, in flight, delayed, dead, now ms}.
STATS = _NOW + """
local ready = 0
local oldest = -1
for b = 1, 3 do
  local n = redis.call('LLEN', KEYS[b])
  if n > 0 then
    ready = ready + n
    local head = redis.call('LINDEX', KEYS[b], 0)
    local since = tonumber(string.sub(head, 1, string.find(head, ':', 1, true) - 1))
    if oldest < 0 or since < oldest then oldest = since end
  end
end
local due = redis.call('ZCOUNT', KEYS[6], '-inf', now)
if due > 0 then
  ready = ready + due
  local first = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
  local since = tonumber(first[2])
  if oldest < 0 or since < oldest then oldest = since end
end
return {ready, oldest, redis.call('ZCARD', KEYS[5]), redis.call('ZCARD', KEYS[6]) - due,
        redis.call('LLEN', KEYS[7]), now}
"""

# The settle steps that touch several keys run as scripts so each is atomic.
# RETRY: ARGV id, stored body, due ms. Back to the delayed set with the new body.
RETRY = """
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
"""

# DEAD: ARGV id, record JSON. Into the dead-letter list, out of everything else.
DEAD = """
redis.call('LPUSH', KEYS[7], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
"""

# RETURN: ARGV id, band, ready-since ms, wake channel. Back to the front of its
# band, lease dropped, idle workers woken. Skipped when the lease is gone (it
# expired and another worker has it).
RETURN = """
if redis.call('ZREM', KEYS[5], ARGV[1]) == 1 then
  if redis.call('LPUSH', KEYS[3 - tonumber(ARGV[2])], ARGV[3] .. ':' .. ARGV[1]) == 1 then
    redis.call('PUBLISH', ARGV[4], 1)
  end
end
"""

# STORE_RESULT: KEYS result list, state key (one slot: both carry {task-id}).
# ARGV result JSON, ttl ms. A rerun (at-least-once) replaces the earlier result.
STORE_RESULT = """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# ENQUEUE_ONCE: KEYS as ENQUEUE plus KEYS[8], the claim of one schedule tick.
# ARGV wake channel, id, band, stored body, claim ttl ms. Claim and enqueue are
# one atomic step, so a tick is sent exactly once however many schedulers run
# and wherever one of them crashes. Returns the id of the tick's task (this
# caller's, or the one another scheduler sent).
ENQUEUE_ONCE = _NOW + """
if not redis.call('SET', KEYS[8], ARGV[2], 'NX', 'PX', ARGV[5]) then
  return redis.call('GET', KEYS[8])
end
local was_empty = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
                  + redis.call('LLEN', KEYS[3]) == 0
redis.call('HSET', KEYS[4], ARGV[2], ARGV[4])
redis.call('RPUSH', KEYS[3 - tonumber(ARGV[3])], now .. ':' .. ARGV[2])
if was_empty then redis.call('PUBLISH', ARGV[1], 1) end
return ARGV[2]
"""

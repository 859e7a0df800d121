"""The Lua scripts behind ``Store``'s multi-key transitions: each one runs atomically in one round trip.

No key name is spelled here: ``store.py`` builds every key and passes it in KEYS (``DUE`` alone gets the
outbox-record key prefix in ARGV, built there too). Each script's comment lists its KEYS and ARGV in order.
"""

# Adds events (ARGV pairs id, json from index ``first_arg``; their hash keys in KEYS from ``first_key``) to
# the outbox unless a record of the id exists, pending or delivered: enqueueing is idempotent per event id,
# and a delivered event is not published again.
ENQUEUE_LUA = """
local function enqueue(due_key, first_key, first_arg, now)
  local k = first_key
  for i = first_arg, #ARGV, 2 do
    if redis.call('EXISTS', KEYS[k]) == 0 then
      redis.call('HSET', KEYS[k], 'event', ARGV[i + 1], 'attempts', 0, 'first_enqueued', now)
      redis.call('ZADD', due_key, now, ARGV[i])
    end
    k = k + 1
  end
end
"""

# KEYS: due, event hashes... ARGV: now, (id, json)...
ENQUEUE = ENQUEUE_LUA + "enqueue(KEYS[1], 2, 2, ARGV[1])\nreturn 1\n"

# KEYS: job, in-flight. ARGV: job_id, state, phase, updated_at. A finished job is never saved again: that
# would put it back in the in-flight index and resume it after a restart.
SAVE_JOB = """
if redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'phase', ARGV[3], 'updated_at', ARGV[4])
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[1])
return 1
"""

# KEYS: job, in-flight, recent, due, event hashes...
# ARGV: job_id, state, phase, outcome, finished_at, job_ttl_ms, recent_cap, recent_horizon, (id, json)...
FINISH_JOB = (
    ENQUEUE_LUA
    + """
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'phase', ARGV[3], 'outcome', ARGV[4],
           'updated_at', ARGV[5], 'finished_at', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[1])
enqueue(KEYS[4], 5, 9, ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[8])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1 - tonumber(ARGV[7]))
return 1
"""
)

# KEYS: due. ARGV: now, limit, outbox_event key prefix. Returns id, event, attempts, first_enqueued per item.
# An id without a record (deleted by hand) is dropped so it cannot clog the head of the queue.
DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[3] .. id, 'event', 'attempts', 'first_enqueued')
  if f[1] then
    out[#out + 1] = id; out[#out + 1] = f[1]; out[#out + 1] = f[2]; out[#out + 1] = f[3]
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# KEYS: due, event hash, relays set. ARGV: event_id, relay, accepted (0/1), now, next_attempt ('' = done),
# keep_ms. A reschedule adds an attempt only if the event was due: one publish round reported relay by relay
# counts once. A report for an unknown event creates nothing; a late one for a delivered event only adds the
# relay.
RECORD_PUBLISH = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if ARGV[3] == '1' then redis.call('SADD', KEYS[3], ARGV[2]) end
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  if redis.call('HSETNX', KEYS[2], 'done_at', ARGV[4]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
else
  local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if score then
    if tonumber(score) <= tonumber(ARGV[4]) then redis.call('HINCRBY', KEYS[2], 'attempts', 1) end
    redis.call('ZADD', KEYS[1], 'XX', ARGV[5], ARGV[1])
  end
end
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
return 1
"""

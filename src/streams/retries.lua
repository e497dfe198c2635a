-- Retry bookkeeping for one shard; every key shares the shard's hash tag.
-- KEYS[1] retry set (event id scored by due time, ms)
-- KEYS[2] retry data (event id -> JSON array of stream entry fields)
-- KEYS[3] redeliver stream
--
-- ARGV[1] = 'schedule': ARGV[2] delay ms, ARGV[3] event id, ARGV[4] fields JSON
-- ARGV[1] = 'move':     ARGV[2] most entries to move; moves due retries to the stream
-- ARGV[1] = 'now':      ARGV[2] event id, ARGV[3] fields JSON; cancels a pending
--                       retry of the event and queues it at once (replay)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if ARGV[1] == 'schedule' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  return 1
elseif ARGV[1] == 'move' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
  for _, id in ipairs(due) do
    local data = redis.call('HGET', KEYS[2], id)
    if data then
      redis.call('XADD', KEYS[3], '*', unpack(cjson.decode(data)))
    end
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
  end
  return #due
elseif ARGV[1] == 'now' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('XADD', KEYS[3], '*', unpack(cjson.decode(ARGV[3])))
  return 1
end
return redis.error_reply('unknown retry operation')

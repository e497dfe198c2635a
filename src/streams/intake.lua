-- Admits one event: rate limit, then dedup, then enqueue, atomically.
-- (Appended to gcra.lua.)
--
-- KEYS[1] the organization's rate-limit state
-- KEYS[2] the dedup key for this event (KEYS[1] again when there is no dedup_id)
-- KEYS[3] the shard's event stream
-- KEYS[4] the shard's index of events not yet archived (event id -> stream id)
-- ARGV[1] requests allowed per period   ARGV[2] period in ms
-- ARGV[3] dedup window in seconds       ARGV[4] "1" when the event has a dedup_id
-- ARGV[5] event id                      ARGV[6..] stream entry field/value pairs
--
-- Returns {outcome, remaining, reset_ms, retry_after_ms, detail}: outcome 1 is
-- accepted (detail: stream id), 2 a duplicate (detail: the original event id),
-- 0 rate limited. A duplicate counts against the limit: it is a request.

local allowed, remaining, reset, retry_after = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if not allowed then
  return {0, remaining, reset, retry_after, ''}
end

if ARGV[4] == '1' then
  local original = redis.call('GET', KEYS[2])
  if original then
    return {2, remaining, reset, 0, original}
  end
  redis.call('SET', KEYS[2], ARGV[5], 'EX', tonumber(ARGV[3]))
end

local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
local entry = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('HSET', KEYS[4], ARGV[5], entry)
return {1, remaining, reset, 0, entry}

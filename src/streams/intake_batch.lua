-- Admits a batch of one organization's events, each as intake.lua admits
-- one: rate limit, then dedup, then enqueue, all or nothing per event.
-- (Appended to gcra.lua.) Every event, valid or not, counts against the
-- limit; once one is refused the rest are too, since the allowance does not
-- grow within one call.
--
-- KEYS[1] the organization's rate-limit state
-- KEYS[2] the shard's event stream
-- KEYS[3] the shard's index of events not yet archived
-- KEYS[4..] the dedup keys of the events that have a dedup_id, in order
-- ARGV[1] requests allowed per period   ARGV[2] period in ms
-- ARGV[3] dedup window in seconds       ARGV[4] number of events
-- then per event: 'x' (invalid: only counted), or
--                 'v', event id, '1'/'0' (has a dedup_id), n, n field/value items
--
-- Returns {remaining, reset_ms, retry_after_ms, outcome, detail, outcome, detail, ...}:
-- per event 1 accepted (detail: stream id), 2 duplicate (detail: the
-- original id), 0 rate limited, 3 counted only (invalid).

local limit, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local remaining, reset, retry_after = 0, 0, 0
local refused = false
local out = {}
local at = 5
local dedup_at = 4

for _ = 1, tonumber(ARGV[4]) do
  local kind = ARGV[at]
  local allowed = false
  if not refused then
    local ok, rem, rst, ra = gcra(KEYS[1], limit, period)
    remaining, reset = rem, rst
    if ok then allowed = true else refused = true; retry_after = ra end
  end
  if kind == 'x' then
    at = at + 1
    out[#out + 1] = allowed and 3 or 0
    out[#out + 1] = ''
  else
    local id, has_dedup, n = ARGV[at + 1], ARGV[at + 2], tonumber(ARGV[at + 3])
    local first = at + 4
    at = first + n
    local dedup_key = nil
    if has_dedup == '1' then
      dedup_key = KEYS[dedup_at]
      dedup_at = dedup_at + 1
    end
    if not allowed then
      out[#out + 1] = 0
      out[#out + 1] = ''
    else
      local original = dedup_key and redis.call('GET', dedup_key)
      if original then
        out[#out + 1] = 2
        out[#out + 1] = original
      else
        if dedup_key then
          redis.call('SET', dedup_key, id, 'EX', window)
        end
        local entry = redis.call('XADD', KEYS[2], '*', unpack(ARGV, first, at - 1))
        redis.call('HSET', KEYS[3], id, entry)
        out[#out + 1] = 1
        out[#out + 1] = entry
      end
    end
  end
end

local reply = {remaining, reset, retry_after}
for i = 1, #out do reply[#reply + 1] = out[i] end
return reply

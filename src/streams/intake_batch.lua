-- Admits a batch of one organization's events, each as intake.lua admits
-- one: rate limit, then dedup, then enqueue, all or nothing per event.
-- (Appended to gcra.lua.) Every event, valid or not, counts against the
-- limit, in order: the first ones the allowance covers are admitted and the
-- rest refused, as the same events sent one by one would be. The limit state
-- and the index of unarchived events are each written once per batch, so an
-- event costs Redis little more than its XADD.
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

local count = tonumber(ARGV[4])
local window = tonumber(ARGV[3])
local allowed, remaining, reset, retry_after =
  gcra_take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), count)

local reply = {remaining, reset, retry_after}
local index = {}
local at = 5
local dedup_at = 4

for i = 1, count do
  local kind = ARGV[at]
  if kind == 'x' then
    at = at + 1
    reply[#reply + 1] = i <= allowed and 3 or 0
    reply[#reply + 1] = ''
  else
    local id, has_dedup, n = ARGV[at + 1], ARGV[at + 2], tonumber(ARGV[at + 3])
    local first = at + 4
    at = first + n
    local dedup_key = nil
    if has_dedup == '1' then
      dedup_key = KEYS[dedup_at]
      dedup_at = dedup_at + 1
    end
    if i > allowed then
      reply[#reply + 1] = 0
      reply[#reply + 1] = ''
    else
      local original = dedup_key and redis.call('GET', dedup_key)
      if original then
        reply[#reply + 1] = 2
        reply[#reply + 1] = original
      else
        if dedup_key then
          redis.call('SET', dedup_key, id, 'EX', window)
        end
        local entry = redis.call('XADD', KEYS[2], '*', unpack(ARGV, first, at - 1))
        index[#index + 1] = id
        index[#index + 1] = entry
        reply[#reply + 1] = 1
        reply[#reply + 1] = entry
      end
    end
  end
end

if #index > 0 then
  redis.call('HSET', KEYS[3], unpack(index))
end
return reply

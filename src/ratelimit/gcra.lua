-- GCRA over a period with a burst of the whole period's allowance: a request
-- is admitted while the theoretical arrival time (TAT) stays within one
-- period of now. The clock is the server's, so every replica measures against
-- the same time. Returns allowed (boolean), remaining, reset_ms, retry_after_ms.
local function gcra(key, limit, period)
  local interval = period / limit
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  if new_tat - now > period then
    return false, 0, math.ceil(tat - now), math.ceil(new_tat - now - period)
  end
  redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
  return true, math.floor((period - (new_tat - now)) / interval), math.ceil(new_tat - now), 0
end

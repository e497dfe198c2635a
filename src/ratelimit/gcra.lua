-- GCRA over a period with a burst of the whole period's allowance: a request
-- is admitted while the theoretical arrival time (TAT) stays within one
-- period of now. The clock is the server's, so every replica measures against
-- the same time.
--
-- gcra_take counts n requests in order and admits the longest prefix that
-- fits; the state is read and written once, however large n is. Each step
-- rounds the TAT as storing it would, so n requests in one call decide
-- exactly as n calls of their own would. Returns taken, remaining, reset_ms,
-- retry_after_ms (retry_after_ms is 0 when all n were taken).
local function gcra_take(key, limit, period, n)
  local interval = period / limit
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local taken, last, retry_after = 0, nil, 0
  while taken < n do
    local new_tat = tat + interval
    if new_tat - now > period then
      retry_after = math.ceil(new_tat - now - period)
      break
    end
    last = new_tat
    tat = tonumber(tostring(new_tat))
    taken = taken + 1
  end
  if last == nil then
    return 0, 0, math.ceil(tat - now), retry_after
  end
  redis.call('SET', key, tostring(last), 'PX', math.ceil(last - now) + 1000)
  if taken < n then
    return taken, 0, math.ceil(tat - now), retry_after
  end
  return taken, math.floor((period - (last - now)) / interval), math.ceil(last - now), 0
end

-- One request. Returns allowed (boolean), remaining, reset_ms, retry_after_ms.
local function gcra(key, limit, period)
  local taken, remaining, reset, retry_after = gcra_take(key, limit, period, 1)
  return taken == 1, remaining, reset, retry_after
end

-- A key-guessing flood: POST /api/events with a real key's prefix
-- (env FLOOD_PREFIX, `trg_<16 hex>`) and a random 43-character secret each.

report_label = "flood"
dofile((os.getenv("BENCH_DIR") or "bench") .. "/report.lua")

local prefix = os.getenv("FLOOD_PREFIX") or "trg_0000000000000000"
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local body = '{"type":"flood","payload":{}}'

function setup(thread)
   thread:set("seed", math.random(1, 2 ^ 30))
end

function init()
   math.randomseed(seed)
end

function request()
   local chars = {}
   for i = 1, 43 do
      local n = math.random(1, #alphabet)
      chars[i] = alphabet:sub(n, n)
   end
   local headers = {
      ["Content-Type"] = "application/json",
      ["X-API-Key"] = prefix .. "_" .. table.concat(chars),
   }
   return wrk.format("POST", "/api/events", headers, body)
end

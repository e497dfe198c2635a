-- wrk script: batch ingestion load against POST /api/events/batch.
--
--   wrk -t2 -c16 -d15s --timeout 5s -s bench/batch.lua \
--       http://127.0.0.1:8080/api/events/batch -- /path/to/keys.lua [events per batch]
--
-- Like events.lua: requests rotate over the keys and every event is unique.
-- The report counts requests; events/s is requests/s times the batch size
-- (BATCH_SIZE in the BENCH_RESULT line).

local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
report_label = "batch"
dofile(script_dir .. "report.lua")

local pad = string.rep("0123456789abcdefghij", 10)

local threads = {}
function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

local keys, next_key, counter, path, headers, size

function init(args)
   local keys_file = args[1] or os.getenv("BENCH_KEYS_FILE")
   if not keys_file then
      error("usage: wrk ... -s batch.lua <url>/api/events/batch -- <keys.lua> [size]")
   end
   keys = dofile(keys_file)
   size = tonumber(args[2] or "100")
   next_key = id % #keys
   counter = 0
   path = wrk.path
   headers = { ["Content-Type"] = "application/json" }
end

function request()
   headers["X-API-Key"] = keys[next_key + 1]
   next_key = (next_key + 1) % #keys
   local events = {}
   for i = 1, size do
      counter = counter + 1
      events[i] = string.format(
         '{"type":"bench.event","payload":{"n":%d,"thread":%d,"pad":"%s"}}',
         counter, id, pad)
   end
   return wrk.format("POST", path, headers, '{"events":[' .. table.concat(events, ",") .. ']}')
end

-- wrk script: ingestion load against POST /api/events.
--
-- Normally started by bench/ingest.sh:
--   wrk -t2 -c64 -d15s --timeout 5s -s bench/events.lua \
--       http://127.0.0.1:8080/api/events -- /path/to/keys.lua
--
-- keys.lua must `return { "key1", "key2", ... }` (API keys of existing
-- organizations). Requests rotate over the keys so the load is spread across
-- many tenants, like production traffic, instead of hammering one org's
-- stream and rate-limit bucket. Each thread starts at a different key.
--
-- Every body is unique (thread id + per-thread counter), so nothing can be
-- answered from a cache or collapsed as a duplicate.
--
-- Set BENCH_STATUS_BREAKDOWN=1 to also count responses per HTTP status
-- (costs some client CPU, because wrk then parses every response).

local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
report_label = "ingest"
dofile(script_dir .. "report.lua")

-- ~200 bytes of padding, to make the payload size realistic.
local pad = string.rep("0123456789abcdefghij", 10)

-- setup() runs in the main Lua state once per thread, before init().
local threads = {}
function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

local keys, next_key, counter, path, headers

function init(args)
   local keys_file = args[1] or os.getenv("BENCH_KEYS_FILE")
   if not keys_file then
      error("usage: wrk ... -s events.lua <url>/api/events -- <keys.lua>")
   end
   keys = dofile(keys_file)
   if type(keys) ~= "table" or #keys == 0 then
      error(keys_file .. " must return a non-empty list of API keys")
   end
   -- `id` is set by setup(); offset the rotation per thread.
   next_key = id % #keys
   counter = 0
   -- wrk.path is the path of the URL given on the command line, so a
   -- BASE_URL with a path prefix keeps working.
   path = wrk.path
   headers = { ["Content-Type"] = "application/json" }
end

function request()
   counter = counter + 1
   headers["X-API-Key"] = keys[next_key + 1]
   next_key = (next_key + 1) % #keys
   local body = string.format(
      '{"type":"bench.event","payload":{"n":%d,"thread":%d,"pad":"%s"}}',
      counter, id, pad)
   return wrk.format("POST", path, headers, body)
end

if os.getenv("BENCH_STATUS_BREAKDOWN") == "1" then
   statuses = {}
   function response(status, _headers, _body)
      statuses[status] = (statuses[status] or 0) + 1
   end

   local report = done
   function done(summary, latency, requests)
      report(summary, latency, requests)
      local total = {}
      for _, thread in ipairs(threads) do
         for status, n in pairs(thread:get("statuses") or {}) do
            total[status] = (total[status] or 0) + n
         end
      end
      local codes = {}
      for status in pairs(total) do table.insert(codes, status) end
      table.sort(codes)
      for _, status in ipairs(codes) do
         io.write(string.format("[%s] HTTP %d: %d\n", report_label, status, total[status]))
      end
   end
end

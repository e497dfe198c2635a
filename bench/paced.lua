-- wrk script: a steady load well below saturation, for measuring cost per
-- event rather than the ceiling. Loads events.lua (or the script named by
-- PACED_SCRIPT, e.g. batch.lua) and spaces the requests of each wrk thread
-- evenly at PACED_RATE requests a second: every request takes the next slot
-- of the thread's schedule, on whichever connection is free; a slot missed
-- because every connection was busy is skipped, not made up in a burst.
--
--   PACED_RATE=1000 wrk -t1 -c16 -d30s -s bench/paced.lua \
--       http://127.0.0.1:8080/api/events -- /path/to/keys.lua
--
-- Started by bench/cost.py (one thread, so PACED_RATE is the whole rate).

local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(script_dir .. (os.getenv("PACED_SCRIPT") or "events.lua"))

local ffi = require("ffi")
ffi.cdef [[
   typedef struct { long tv_sec; long tv_nsec; } paced_timespec;
   int clock_gettime(int clock, paced_timespec *ts);
]]
local ts = ffi.new("paced_timespec")
local CLOCK_MONOTONIC = 1

local function now_ms()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
   return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local interval = 1000 / tonumber(os.getenv("PACED_RATE") or "1000")
local next_slot

function delay()
   local now = now_ms()
   if not next_slot or next_slot < now then
      next_slot = now
   end
   local wait = next_slot - now
   next_slot = next_slot + interval
   return wait
end

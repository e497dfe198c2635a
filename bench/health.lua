-- wrk script: GET /health, the framework/network ceiling for this machine.
-- The request itself is wrk's default (GET of the URL); this script only adds
-- the same end-of-run report as events.lua so the two runs compare directly.

local script_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
report_label = "health"
dofile(script_dir .. "report.lua")

-- Shared end-of-run report for the wrk scripts in this directory.
-- Loaded with dofile() by events.lua and health.lua; they set report_label.
--
-- wrk calls done() once, in its main Lua state, after all threads finished.
-- Latency values from wrk are in microseconds; everything here prints ms.

report_label = report_label or "run"

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   local rps = summary.requests / secs
   -- wrk counts every response with status >= 400 in errors.status; the
   -- service never answers 1xx/3xx here, so this is the non-2xx count.
   local ok_rps = (summary.requests - e.status) / secs
   local function ms(p) return latency:percentile(p) / 1000.0 end

   io.write(string.format("\n[%s] %d requests in %.2fs: %.1f req/s (%.1f req/s with 2xx)\n",
      report_label, summary.requests, secs, rps, ok_rps))
   io.write(string.format("[%s] latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n",
      report_label, ms(50), ms(90), ms(99), latency.max / 1000.0))
   io.write(string.format("[%s] errors: connect %d, read %d, write %d, timeout %d, non-2xx %d\n",
      report_label, e.connect, e.read, e.write, e.timeout, e.status))
   -- One machine-readable line; bench/ingest.sh turns these into a table row.
   io.write(string.format(
      "BENCH_RESULT label=%s requests=%d seconds=%.2f rps=%.1f ok_rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f connect=%d read=%d write=%d timeout=%d non2xx=%d\n",
      report_label, summary.requests, secs, rps, ok_rps, ms(50), ms(90), ms(99),
      e.connect, e.read, e.write, e.timeout, e.status))
end

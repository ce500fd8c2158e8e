-- wrk script for the imgcdn load benchmark (benches/load/run.py).
--
-- Replays a precomputed, seeded sequence of URL paths (one per line in the
-- file given as the first script argument). loadgen.py draws that sequence
-- from a Zipf popularity over the data set's keys, so every server gets
-- exactly the same key stream. Each wrk thread starts at its own offset.
--
-- Usage: wrk -t1 -c64 -d10s -s zipf.lua http://127.0.0.1:PORT -- PATHS_FILE
--
-- done() prints one JSON line (prefixed by "BENCH_JSON ") that loadgen.py
-- parses: requests, bytes, socket errors, non-2xx/3xx responses and latency
-- percentiles in microseconds.

local thread_no = 0

function setup(thread)
   thread:set("thread_no", thread_no)
   thread_no = thread_no + 1
end

local reqs = {}
local n = 0
local idx = 0

function init(args)
   local f = assert(io.open(args[1], "r"))
   for line in f:lines() do
      if #line > 0 then
         n = n + 1
         -- Pre-format every request once: request() then costs a table read.
         reqs[n] = wrk.format("GET", line)
      end
   end
   f:close()
   assert(n > 0, "empty paths file")
   -- Spread threads over the sequence (deterministic).
   idx = ((thread_no or 0) * 7919) % n
end

function request()
   idx = idx + 1
   if idx > n then
      idx = 1
   end
   return reqs[idx]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
      '"lat_mean_us":%.1f,"lat_max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end

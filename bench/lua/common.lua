-- Shared by every scenario script: headers from the environment, thread numbering, and a done()
-- that prints one parseable line for bench/run.py.
--
-- Environment (set by bench/run.py):
--   BENCH_TOKEN    bearer token (the service); omitted for the baseline
--   BENCH_USER_ID  X-User-Id header (the baseline); omitted for the service
--   BENCH_DATA     path of a generated Lua file returning {get_ids = {...}, patch_ids = {...},
--                  refund_ids = {...}}
--   BENCH_RUN_ID   unique per wrk invocation (prefix of created payment ids and idempotency keys)
--   BENCH_THREADS  wrk's -t, to split the PATCH pool between threads

bench = {}

function bench.headers(extra)
   local headers = {}
   local token = os.getenv("BENCH_TOKEN")
   if token ~= nil and token ~= "" then
      headers["Authorization"] = "Bearer " .. token
   end
   local user = os.getenv("BENCH_USER_ID")
   if user ~= nil and user ~= "" then
      headers["X-User-Id"] = user
   end
   for name, value in pairs(extra or {}) do
      headers[name] = value
   end
   return headers
end

function bench.data()
   local path = os.getenv("BENCH_DATA")
   if path == nil or path == "" then
      error("BENCH_DATA is not set")
   end
   return dofile(path)
end

-- setup() runs in the main Lua state once per thread, before the threads start.
local next_thread = 0
function setup(thread)
   next_thread = next_thread + 1
   thread:set("tid", next_thread)
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      "BENCH_RESULT {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,"
         .. "\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d,\"timeouts\":%d,\"non_2xx_3xx\":%d,"
         .. "\"latency_us\":{\"min\":%d,\"mean\":%.1f,\"stdev\":%.1f,\"p50\":%d,\"p90\":%d,\"p99\":%d,\"p99_9\":%d,\"max\":%d}}\n",
      summary.requests, summary.duration, summary.bytes,
      errors.connect, errors.read, errors.write, errors.timeout, errors.status,
      latency.min, latency.mean, latency.stdev,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max))
end

-- POST /api/v1/payments/: a new payment per request. payment_id and Idempotency-Key are unique:
-- BENCH_RUN_ID (one per wrk run) .. thread number .. a random per-thread prefix .. a counter.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local prefix
local counter = 0
local headers
local providers = { "stripe", "stripe", "stripe", "paypal", "square" }

function init(args)
   math.randomseed(os.time() * 1000 + tid)
   prefix = string.format("%s_%d_%06x", os.getenv("BENCH_RUN_ID") or "run", tid, math.random(0, 0xffffff))
   headers = bench.headers({ ["Content-Type"] = "application/json", ["Accept"] = "application/json" })
end

function request()
   counter = counter + 1
   local key = prefix .. "_" .. counter
   headers["Idempotency-Key"] = "bench-" .. key
   local body = string.format(
      '{"payment_id":"pi_bench_%s","provider":"%s","currency":"USD","amount_total":"%d.%02d",'
         .. '"payment_method_types":["card"],"customer_id":"cus_bench","customer_email":"bench@example.com",'
         .. '"booking_id":"bk_bench_%d","property_id":"prop_%d","description":"Benchmark booking",'
         .. '"metadata":{"source":"bench"}}',
      key, providers[math.random(#providers)], math.random(10, 2000), math.random(0, 99),
      math.random(1, 1000000), math.random(1, 500))
   return wrk.format("POST", "/api/v1/payments/", headers, body)
end

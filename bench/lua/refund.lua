-- POST /api/v1/payments/{id}/refunds: a pending refund of 0.01 per request, on a random payment of
-- the refund pool (user 1's succeeded USD payments of 100 or more; bench/run.py deletes the pool's
-- refunds and sets its sums back to 0 before every run, so refundable never runs out). The
-- Idempotency-Key is unique per request: BENCH_RUN_ID .. thread .. a random per-thread prefix .. a
-- counter, as in create.lua.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local ids
local prefix
local counter = 0
local headers
-- The same body as bench/run.py's preflight (REFUND_AMOUNT, REFUND_REASON).
local body = '{"amount":"0.01","reason":"requested_by_customer"}'

function init(args)
   math.randomseed(os.time() * 1000 + tid)
   ids = bench.data().refund_ids
   prefix = string.format("%s_%d_%06x", os.getenv("BENCH_RUN_ID") or "run", tid, math.random(0, 0xffffff))
   headers = bench.headers({ ["Content-Type"] = "application/json", ["Accept"] = "application/json" })
end

function request()
   counter = counter + 1
   headers["Idempotency-Key"] = "bench-refund-" .. prefix .. "_" .. counter
   return wrk.format("POST", "/api/v1/payments/" .. ids[math.random(#ids)] .. "/refunds", headers, body)
end

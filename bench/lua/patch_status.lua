-- PATCH /api/v1/payments/{id}/status on a pool of the caller's payments seeded as "failed"
-- (bench/run.py resets the pool to failed before every run). Each thread owns a slice of the pool
-- and alternates every payment pending <-> failed: failed -> pending and pending -> failed are both
-- legal moves, so every answer should be 200.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local ids = {}
local state = {}
local headers

function init(args)
   math.randomseed(os.time() * 1000 + tid)
   local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
   for i, id in ipairs(bench.data().patch_ids) do
      if (i - 1) % threads == tid - 1 then
         ids[#ids + 1] = id
      end
   end
   if #ids == 0 then
      ids = bench.data().patch_ids
   end
   headers = bench.headers({ ["Content-Type"] = "application/json", ["Accept"] = "application/json" })
end

function request()
   local id = ids[math.random(#ids)]
   local target = state[id] or "pending"
   state[id] = (target == "pending") and "failed" or "pending"
   return wrk.format("PATCH", "/api/v1/payments/" .. id .. "/status", headers,
      '{"payment_status":"' .. target .. '"}')
end

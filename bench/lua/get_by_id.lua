-- GET /api/v1/payments/{id} for random ids among the caller's own payments.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local ids
local headers

function init(args)
   math.randomseed(os.time() * 1000 + tid)
   ids = bench.data().get_ids
   headers = bench.headers({ ["Accept"] = "application/json" })
end

function request()
   return wrk.format("GET", "/api/v1/payments/" .. ids[math.random(#ids)], headers)
end

-- One fixed GET (the list scenarios): BENCH_PATH is the path and query string. No request()
-- function, so wrk sends one pre-built request and the client costs nothing per request.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers = bench.headers({ ["Accept"] = "application/json" })

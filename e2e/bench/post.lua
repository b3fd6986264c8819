-- wrk script of e2e/bench/run.py and drift_overhead.py: POST the JSON body in the file named by BENCH_BODY, or
-- bodies drawn at random from the file named by BENCH_BODIES (one per line; every wrk thread with its own
-- seed, so the server sees varied rows as real traffic would), then print one machine-readable line with the
-- counts and the latency percentiles (microseconds).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local many = os.getenv("BENCH_BODIES")
local bodies = {}
if many then
  for line in io.lines(many) do
    if #line > 0 then
      bodies[#bodies + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
    end
  end
  local threads = 0
  setup = function(thread)
    threads = threads + 1
    thread:set("seed", threads)
  end
  init = function(args)
    math.randomseed(seed * 7919)
  end
  request = function()
    return bodies[math.random(#bodies)]
  end
else
  local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  wrk.body = f:read("*a")
  f:close()
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end

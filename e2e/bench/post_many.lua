-- wrk script of e2e/bench/drift_overhead.py: POST JSON bodies drawn at random from the file named by
-- BENCH_BODIES (one per line; every wrk thread with its own seed), so the server sees varied rows as real
-- traffic would (a drift window of a few repeated rows is no test), then print one machine-readable line
-- with the counts and the latency percentiles (microseconds).
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("seed", threads)
end

init = function(args)
  math.randomseed(seed * 7919)
end

local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do
  if #line > 0 then
    bodies[#bodies + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
  end
end

request = function()
  return bodies[math.random(#bodies)]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end

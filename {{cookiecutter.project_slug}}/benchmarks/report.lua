-- wrk's script for the benchmarks: the request from the environment, and the
-- figures as one JSON line that benchmarks/load.py reads.
local method = os.getenv("BENCH_METHOD")
local body = os.getenv("BENCH_BODY")

wrk.method = (method ~= nil and method ~= "") and method or "GET"
if body ~= nil and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
    local errors = summary.errors
    io.write(string.format(
        'BENCH_RESULT {"requests": %d, "duration_us": %d, "status_errors": %d, '
            .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, '
            .. '"timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
        summary.requests, summary.duration, errors.status, errors.connect,
        errors.read, errors.write, errors.timeout,
        latency:percentile(50), latency:percentile(99), latency.max))
end

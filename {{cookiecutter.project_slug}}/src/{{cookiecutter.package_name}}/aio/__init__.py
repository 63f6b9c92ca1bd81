"""The toolkit's async twins, for the aiohttp adapter: nothing here blocks the loop.

An aiohttp worker serves every request it holds on one event loop, so one
blocking call (a sync Redis round trip, `time.sleep`, `subprocess.run`, a
large file write) stalls them all. Each module here mirrors a sync module of
the toolkit with the same method names, awaited, over the same pure core:

- `state`, `locks`: redis.asyncio with the sync twins' keys, Lua scripts and
  fencing; the embedded backend (SQLite, flock) offloaded to a thread pool.
- `breaker`: the same per-worker `Breaker`, around awaited calls.
- `ratelimit`: the same GCRA script and client rule.
- `processes`: `loop.subprocess_exec`, the same reaper, argv, environment
  and session, and the same end of all a task started.
- `offload`: the app's own thread pools, for everything that must block.
- `runtime`: what each worker opens once, inside its event loop.

A unit test holds every async twin to its sync Protocol, method by method.
"""

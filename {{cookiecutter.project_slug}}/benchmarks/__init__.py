"""`make bench`: every performance promise of the service, measured side by side.

`python -m benchmarks` starts its own stacks (nginx, gunicorn, Redis on
loopback), runs each measure in interleaved rounds against its reference and
reports ratios, never bare speeds: a shared machine's absolute figures say
little, but two setups measured in turns on it compare fairly.
"""

"""Download speed side by side: X-Accel-Redirect, nginx serving the file, the app sending it.

Shared machines are noisy, so absolute figures mean little; this runs the
three ways in one process, interleaved round by round on the same file, and
reports each one's median throughput and its ratio to nginx serving the file
as a static file. Run it with `make bench` (it starts its own stacks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stack import Stack
from stack.project import STATIC_DIR

CHUNK = 1 << 20


def download(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    received = 0
    with requests.get(url, stream=True, timeout=120) as response:
        response.raise_for_status()
        for chunk in response.iter_content(CHUNK):
            received += len(chunk)
    return received, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.size_mib << 20

    with tempfile.TemporaryDirectory() as tmp:
        accel = Stack(Path(tmp) / "accel")
        direct = Stack(Path(tmp) / "direct", env={"EXPORT_DELIVERY": "direct"})
        static_copy = STATIC_DIR / f".bench-{os.getpid()}.txt"
        try:
            accel.start()
            direct.start()
            meta = requests.post(
                f"{accel.base_url}/api/exports",
                json={"size_bytes": size, "label": "bench"},
                timeout=300,
            ).json()
            # The same bytes, published in the direct stack's store and as a static file.
            source = accel.export_dir / "files" / meta["id"]
            target = direct.export_dir / "files" / meta["id"]
            target.mkdir(parents=True)
            for name in ("export.txt", "meta.json"):
                os.link(source / name, target / name)
            os.link(source / "export.txt", static_copy)
            urls = {
                "nginx static file": f"{accel.base_url}/static/{static_copy.name}",
                "X-Accel-Redirect": accel.base_url + meta["download_url"],
                "app sends (direct)": direct.base_url + meta["download_url"],
            }
            timings: dict[str, list[float]] = {name: [] for name in urls}
            for _ in range(args.rounds):
                for name, url in urls.items():
                    received, seconds = download(url)
                    assert received == size, f"{name}: {received} of {size} bytes"
                    timings[name].append(size / seconds / (1 << 20))
        finally:
            static_copy.unlink(missing_ok=True)
            direct.stop()
            accel.stop()

    baseline = statistics.median(timings["nginx static file"])
    print(f"{args.size_mib} MiB, {args.rounds} interleaved rounds, median MiB/s:")
    for name, rates in timings.items():
        median = statistics.median(rates)
        print(f"  {name:20s} {median:8.0f} MiB/s   {median / baseline:5.2f} x nginx static")
    return 0


if __name__ == "__main__":
    sys.exit(main())

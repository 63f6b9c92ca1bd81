"""Schemathesis fuzzes every operation through nginx, from the service's own description.

`st run` loads /api/openapi.json and sends what it generates from it: valid
and invalid bodies, path parameters and headers, boundary values, other
methods, and chains that follow the description's links (create an export,
then read and download it). Every answer must match the description: no 5xx
(but the declared 507 of an export that does not fit), a declared status, a
declared content type, the declared headers and a body that matches the
declared schema. The CLI runs in a subprocess: its options are schemathesis'
stable interface, and a run cannot disturb this process.

The run is reproducible (deterministic generation, one worker) and bounded:
a few examples per operation, a timeout per request and one for the whole
run. It gets a stack of its own whose export quota is small, so an export
the fuzzer asks for in gigabytes answers 507 at once instead of writing the
disk full; fuzz_hooks.py shortens the valid waits (a lock's hold, a sleep
task's timeout) so a run takes seconds, not minutes. With BASE_URL set the
fuzzer is skipped: the quota of a stack it did not start is not its to lower.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from client import Client, assert_json
from stacks import own_stack_or_skip

# Run on each framework's default worker class only by the template's CI, because
# every answer is the app's validation and nginx's limits, the same code under every class.
pytestmark = pytest.mark.same_for_every_worker_class

HERE = Path(__file__).resolve().parent
HOOKS = HERE / "fuzz_hooks.py"
DESCRIPTION = "/api/openapi.json"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
# Examples per operation in the fuzzing phase; the coverage phase adds its own
# boundary and invalid cases, a bounded number per operation.
MAX_EXAMPLES = 10
# Seconds. No answer may take longer than this, even on a loaded machine.
REQUEST_TIMEOUT = 20
# Seconds for the whole run (about 20 s on two busy cores).
RUN_TIMEOUT = 75
# A quota of 16 MiB: exports under it are made (and downloaded through the
# description's links), larger ones answer 507 without a byte written.
FUZZ_ENV = {"WEB_CONCURRENCY": "2", "EXPORT_QUOTA_BYTES": str(16 << 20)}

# 507 insufficient_storage is the contract's answer to an export that does not
# fit: declared, and checked against the description like every answer, but a
# 5xx, which not_a_server_error counts as a server error unless told. Only there.
CONFIG = """\
[[operations]]
include-operation-id = "create_export"
checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "507"]
"""


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with own_stack_or_skip(tmp_path_factory, "fuzz", FUZZ_ENV) as started:
        yield started


def st_run(base_url: str, workdir: Path) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """Run `st run` against the service; its output and its two reports."""
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    events, report = workdir / "events.ndjson", workdir / "report.json"
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
        "run", base_url + DESCRIPTION,
        "--checks", ",".join(CHECKS),
        "--max-examples", str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers", "1",
        "--request-timeout", str(REQUEST_TIMEOUT),
        "--no-color",
        "--report", "ndjson,json",
        "--report-ndjson-path", str(events),
        "--report-json-path", str(report),
    ]  # fmt: skip
    # A clean environment: no proxy settings, nothing written outside `workdir`.
    env = {
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(workdir),
    }
    done = subprocess.run(
        argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    return done, events, report


def answers(events: Path) -> list[tuple[str, int | None]]:
    """(operation, status) of every request the run sent, from its event log."""
    sent = []
    for line in events.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        recorder = event.get("ScenarioFinished", {}).get("recorder", {})
        for case_id, interaction in recorder.get("interactions", {}).items():
            case = recorder["cases"][case_id]["value"]
            response = interaction.get("response") or {}
            sent.append((f"{case['method']} {case['path']}", response.get("status_code")))
    return sent


def test_every_answer_matches_the_description(fuzz_stack, tmp_path: Path) -> None:
    base_url = fuzz_stack.base_url
    document = assert_json(Client(base_url).get(DESCRIPTION), 200)
    operations = {
        f"{method.upper()} {path}": described
        for path, item in document["paths"].items()
        # schemathesis never fuzzes the path its schema came from.
        if path != DESCRIPTION
        for method, described in item.items()
    }

    started = time.monotonic()
    done, events, report_path = st_run(base_url, tmp_path)
    took = time.monotonic() - started
    output = (done.stdout + done.stderr)[-6000:]
    assert report_path.is_file(), f"st run wrote no report (exit {done.returncode}):\n{output}"
    report = json.loads(report_path.read_text(encoding="utf-8"))

    assert done.returncode == 0, f"st run exited {done.returncode}:\n{output}"
    assert report["complete"] and not report["failures"] and not report["errors"], output
    assert report["operations"]["tested"] == len(operations), (report["operations"], output)

    sent = answers(events)
    by_status = Counter(status for _, status in sent)
    print(f"schemathesis {report['schemathesis_version']}: {len(sent)} requests in {took:.1f} s")
    print("  answers by status:", dict(sorted(by_status.items(), key=str)))
    # Evidence the fuzzer got past the validation of every operation...
    succeeded = {operation for operation, status in sent if status and 200 <= status < 300}
    assert succeeded >= set(operations), sorted(set(operations) - succeeded)
    # ...and was refused where there is input to refuse.
    if any("parameters" in op or "requestBody" in op for op in operations.values()):
        assert by_status[400] > 0, by_status


def test_the_description_is_served_as_json_through_nginx(client: Client) -> None:
    from openapi_spec_validator import validate

    document = assert_json(client.get(DESCRIPTION), 200)
    validate(document)
    assert document["openapi"].startswith("3.1."), document["openapi"]
    assert "/healthz" in document["paths"] and "/readyz" in document["paths"]

"""Child processes report their real exit codes, never see a shell, and die on timeout."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

import pytest
from client import (
    SHAPE_CODES,
    TIMEOUT,
    Client,
    assert_error,
    assert_json,
    processes_mentioning,
    run_concurrently,
)


def run(client: Client, **task: object) -> dict:
    return assert_json(client.post("/api/tasks/run", json=task), 200)


def run_when_admitted(client: Client, **task: object) -> dict:
    """As `run`, waiting out the 503 busy of a host at its cap on tasks, as a client should."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        resp = client.post("/api/tasks/run", json=task)
        if resp.status_code != 503 or time.monotonic() > deadline:
            return assert_json(resp, 200)
        assert_error(resp, 503, "busy")
        time.sleep(int(resp.headers["Retry-After"]))


def check_exit(client: Client, code: int) -> None:
    body = run_when_admitted(client, task="exit", code=code)
    assert body["task"] == "exit", body
    assert body["returncode"] == code, body
    assert body["timed_out"] is False, body
    assert body["stdout"] == "", body
    assert isinstance(body["duration_ms"], int) and body["duration_ms"] >= 0, body


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_exit_code_comes_back_exactly(client: Client, code: int) -> None:
    check_exit(client, code)


def test_many_exit_codes_at_once(client: Client) -> None:
    # More at once than the host's cap on tasks: those past it wait their turn.
    codes = [[0, 1, 3, 255, 2, 42, 127, 128, 200, 254][i % 10] for i in range(40)]
    run_concurrently([lambda c=c: check_exit(client, c) for c in codes], threads=16)


ECHO_TEXTS = [
    "$(id); rm -rf /nonexistent-{tag} && echo \"x\" | cat > /tmp/pwn-{tag}; `uname` 'q' * ~ \\ &",
    "first line\nsecond line\n\ttabbed\r\n",
    "héllo ✓ 日本語 🚀 ¿qué?",
    "-n",
    "-e \\n\\t\\c",
    "ü" * 1000,
]


@pytest.mark.parametrize("template", ECHO_TEXTS, ids=range(len(ECHO_TEXTS)))
def test_echo_returns_text_verbatim(client: Client, template: str) -> None:
    tag = uuid.uuid4().hex
    text = template.replace("{tag}", tag)
    body = run(client, task="echo", text=text)
    assert body["stdout"] == text + "\n", body
    assert body["returncode"] == 0, body
    assert body["timed_out"] is False, body
    assert not os.path.exists(f"/tmp/pwn-{tag}"), "the text went through a shell"


def test_sleep_shorter_than_timeout_finishes(client: Client) -> None:
    body = run(client, task="sleep", seconds=0.2, timeout=5)
    assert body["returncode"] == 0, body
    assert body["timed_out"] is False, body


def unused_seconds_value() -> str:
    """A sleep length like 7.3xx that no process on this host mentions yet."""
    for _ in range(50):
        value = f"7.3{random.choice('123456789')}{random.choice('123456789')}"
        if not processes_mentioning(value):
            return value
    raise AssertionError("every 7.3xx value is in some process's command line")


def test_sleep_past_timeout_is_cut_short(client: Client) -> None:
    started = time.monotonic()
    body = run(client, task="sleep", seconds=7.3, timeout=1)
    took = time.monotonic() - started
    assert body["timed_out"] is True, body
    assert took < 1 + 2, f"answered after {took:.2f}s for a 1s timeout"


def test_timed_out_child_and_grandchild_are_gone(stack, client: Client) -> None:
    value = unused_seconds_value()
    seen: list[list[tuple[int, str]]] = []
    answer: dict = {}

    def call() -> None:
        try:
            answer["body"] = run(client, task="sleep", seconds=float(value), timeout=1)
        except BaseException as exc:  # reported by the main thread below
            answer["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=call)
    thread.start()
    while thread.is_alive() and not seen and time.monotonic() - started < 0.9:
        found = processes_mentioning(value)
        if found:
            seen.append(found)
        time.sleep(0.02)
    thread.join(timeout=10)
    took = time.monotonic() - started
    assert "error" not in answer, answer.get("error")
    assert answer["body"]["timed_out"] is True, answer
    assert took < 1 + 2, f"answered after {took:.2f}s for a 1s timeout"
    assert seen, f"no process mentioning {value} was ever seen, so the check below proves nothing"

    deadline = time.monotonic() + 2
    left = processes_mentioning(value)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = processes_mentioning(value)
    assert not left, f"still running after the timeout: {left}"


def test_unknown_task_is_400(client: Client) -> None:
    for name in ("rm", "sh", "EXIT", "echo "):
        resp = client.post("/api/tasks/run", json={"task": name})
        assert_error(resp, 400, "unknown_task")


@pytest.mark.parametrize(
    "task",
    [
        {"task": "exit", "code": -1},
        {"task": "exit", "code": 256},
        {"task": "exit", "code": "3"},
        {"task": "exit", "code": 1.5},
        {"task": "exit", "code": True},
        {"task": "exit"},
        {"task": "echo", "text": "x" * 1001},
        {"task": "echo", "text": 5},
        {"task": "echo"},
        {"task": "sleep", "seconds": -0.1, "timeout": 1},
        {"task": "sleep", "seconds": 60.5, "timeout": 1},
        {"task": "sleep", "seconds": "1", "timeout": 1},
        {"task": "sleep", "seconds": True, "timeout": 1},
        {"task": "sleep", "seconds": 1, "timeout": 0},
        {"task": "sleep", "seconds": 1, "timeout": 0.05},
        {"task": "sleep", "seconds": 1, "timeout": 60.5},
        {"task": "sleep", "seconds": 1, "timeout": "1"},
    ],
)
def test_out_of_range_values_are_400(client: Client, task: dict) -> None:
    assert_error(client.post("/api/tasks/run", json=task), 400, SHAPE_CODES)


def test_missing_or_non_string_task_is_400(client: Client) -> None:
    for body in ({"code": 0}, {"task": 5}, {"task": None}, ["exit", 0]):
        assert_error(client.post("/api/tasks/run", json=body), 400)

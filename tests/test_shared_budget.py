"""A budget shared through a real redis-server by two processes, each with its own loop of waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
import redis

from airflow_provider_nanobanana.emulator import EmulatorServer, EmulatorSettings
from tests.support import ROOT, TEST_API_KEY, EmulatorAdmin

if TYPE_CHECKING:
    from collections.abc import Iterator

BUDGET = 30
SLOTS = 25  # per process: together they ask for more than the minute's budget
SETTLE = 1.0  # after the budget is spent, time to see any request that overspends it
WITHIN = 30.0  # seconds the processes get to spend it, however slow the machine


@pytest.fixture
def limited_emulator() -> Iterator[EmulatorServer]:
    """An emulator that enforces the same per-minute limit as the budget under test."""
    settings = EmulatorSettings(
        api_key=TEST_API_KEY, generation_seconds=0.3, pending_seconds=0.1, requests_per_minute=BUDGET
    )
    with EmulatorServer(settings=settings) as server:
        yield server


@pytest.fixture
def limited_admin(limited_emulator: EmulatorServer) -> Iterator[EmulatorAdmin]:
    admin = EmulatorAdmin(limited_emulator.root_url)
    yield admin
    admin.close()


def run_two_processes(
    emulator: EmulatorServer, admin: EmulatorAdmin, extra: dict[str, object]
) -> list[dict[str, int]]:
    command = [
        sys.executable,
        "-m",
        "tests.budget_worker",
        emulator.base_url,
        TEST_API_KEY,
        json.dumps(extra),
        str(SLOTS),
    ]
    options = {
        "stdin": subprocess.PIPE,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.DEVNULL,
        "text": True,
    }
    workers = [subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), **options) for _ in range(2)]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        tell(workers, "go")
        deadline = time.monotonic() + WITHIN
        while admin.request_count() < BUDGET and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(SETTLE)
        tell(workers, "stop")
        return [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()


def tell(workers: list[subprocess.Popen[str]], line: str) -> None:
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(line + "\n")
        worker.stdin.flush()


def test_two_processes_share_one_budget_through_redis(
    limited_emulator: EmulatorServer, limited_admin: EmulatorAdmin, redis_url: str
) -> None:
    extra = {"requests_per_minute": BUDGET, "rate_limit_storage": redis_url}

    results = run_two_processes(limited_emulator, limited_admin, extra)

    assert limited_admin.rate_limited() == 0
    assert BUDGET - 5 <= limited_admin.request_count() <= BUDGET  # spent, never overspent
    assert all(result["submitted"] > 0 for result in results)
    keys = redis.Redis.from_url(redis_url).keys("*")
    assert keys
    assert not any(TEST_API_KEY.encode() in key for key in keys)


def test_without_redis_each_process_spends_the_whole_budget(
    limited_emulator: EmulatorServer, limited_admin: EmulatorAdmin
) -> None:
    """The control: the same load with a budget per process runs into APIXO's limit."""
    run_two_processes(limited_emulator, limited_admin, {"requests_per_minute": BUDGET})

    assert limited_admin.rate_limited() > 0

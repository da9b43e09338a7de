"""The production topology: Postgres, Redis, the emulator, and Airflow's parts as separate commands.

Everything starts once for the module (about a minute on two cores) and stops after it. The
emulator runs as its own process with APIXO's per-minute limit set low, so that pacing decides.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.standalone import BIN, spawn, wait_until
from tests.support import ROOT, TEST_API_KEY, EmulatorAdmin, free_port, postgres_cluster, redis_server
from tests.topology.celery import CeleryAirflow

if TYPE_CHECKING:
    from collections.abc import Iterator

EMULATOR_REQUESTS_PER_MINUTE = 180
"""The key's limit in the emulator: APIXO's 10,000 a minute, scaled down."""
BUDGET_PER_MINUTE = 150
"""The connection's ``requests_per_minute``: each of the ten or so processes spending it alone would
promise many times the key's limit; shared through Redis, they keep under it."""
UNSHARED_KEY_LIMIT = 60
"""The limit of the key behind ``apixo_unshared``, whose processes each believe they may spend
``UNSHARED_BUDGET``: together several times the limit, as when nobody divides the budget."""
UNSHARED_BUDGET = 50


@pytest.fixture(scope="package")
def topology_home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nanobanana-topology-") as home:
        yield Path(home)


@contextlib.contextmanager
def emulator_process(log: Path, requests_per_minute: int) -> Iterator[EmulatorAdmin]:
    """The emulator as its own process, limiting the key to ``requests_per_minute``."""
    port = free_port()
    args = [str(BIN / "apixo-emulator"), "--port", str(port), "--api-key", TEST_API_KEY]
    args += ["--requests-per-minute", str(requests_per_minute)]
    process = spawn(args, {"PATH": str(BIN)}, log)
    admin = EmulatorAdmin(f"http://127.0.0.1:{port}")
    try:
        wait_until("the emulator", lambda: _answers(admin), timeout=30, interval=0.1)
        admin.configure(generation_seconds=8, pending_seconds=1, latency_seconds=0)
        yield admin
    finally:
        admin.close()
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="package")
def limited_emulator(topology_home: Path) -> Iterator[EmulatorAdmin]:
    """APIXO for the connections whose budget is shared through Redis."""
    with emulator_process(topology_home / "emulator.log", EMULATOR_REQUESTS_PER_MINUTE) as admin:
        yield admin


@pytest.fixture(scope="package")
def unshared_emulator(topology_home: Path) -> Iterator[EmulatorAdmin]:
    """APIXO for ``apixo_unshared``: every process believes it may spend the budget alone."""
    with emulator_process(topology_home / "emulator-unshared.log", UNSHARED_KEY_LIMIT) as admin:
        yield admin


def _answers(admin: EmulatorAdmin) -> bool:
    try:
        admin.tasks()
    except Exception:
        return False
    return True


@pytest.fixture(scope="package")
def broker_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="package")
def database_url() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="package")
def celery_airflow(
    topology_home: Path,
    limited_emulator: EmulatorAdmin,
    unshared_emulator: EmulatorAdmin,
    broker_url: str,
    database_url: str,
) -> Iterator[CeleryAirflow]:
    airflow = CeleryAirflow(
        topology_home / "airflow",
        {
            "provider_examples": ROOT / "example_dags",
            "e2e_dags": ROOT / "tests" / "e2e" / "dags",
            "topology_dags": Path(__file__).parent / "dags",
        },
        {"NANOBANANA_OUTPUT_DIR": str(topology_home / "output")},
        database_url=database_url,
        broker_url=broker_url,
    )
    airflow.home.mkdir()
    airflow.start()
    try:
        base_url = limited_emulator.root_url + "/api/v1"
        # One budget for every process, in the Redis that is also Celery's broker (another DB number).
        budget = {"requests_per_minute": BUDGET_PER_MINUTE, "rate_limit_storage": broker_url[:-1] + "1"}
        shared = json.dumps(budget)
        airflow.save_connection("apixo_default", "apixo", host=base_url, password=TEST_API_KEY, extra=shared)
        callback = json.dumps({**budget, "callback_base_url": airflow.url})
        airflow.save_connection(
            "apixo_callback", "apixo", host=base_url, password=TEST_API_KEY, extra=callback
        )
        unshared = json.dumps({"requests_per_minute": UNSHARED_BUDGET})
        airflow.save_connection(
            "apixo_unshared",
            "apixo",
            host=unshared_emulator.root_url + "/api/v1",
            password=TEST_API_KEY,
            extra=unshared,
        )
        airflow.create_pool("apixo", 1000, include_deferred=True)
        yield airflow
    finally:
        airflow.stop()

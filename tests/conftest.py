"""Shared test set-up: a private Airflow home on SQLite, and the APIXO emulator over loopback HTTP.

Airflow reads its configuration at import, so the environment is set before anything imports it.
Two DAG bundles are configured: the shipped ``example_dags/`` and the tests' own ``tests/dags/``.
Proxy variables are cleared first: the hook's clients honour them, and loopback must stay loopback.

Markers: ``dag`` (a real Airflow on SQLite: ``dag.test()``), ``e2e`` (``airflow standalone``), ``topology``
(CeleryExecutor on Postgres and Redis); every other test is marked ``unit`` at collection, so
``pytest -m unit`` is the quick in-process set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
for _name in PROXY_VARIABLES:
    os.environ.pop(_name, None)
    os.environ.pop(_name.lower(), None)


def _bundle(name: str, path: Path) -> dict[str, object]:
    classpath = "airflow.dag_processing.bundles.local.LocalDagBundle"
    return {"name": name, "classpath": classpath, "kwargs": {"path": str(path)}}


def _configure_airflow() -> None:
    """A private Airflow home on SQLite with both bundles, in the environment Airflow reads at import.

    ``tests.support`` imports Airflow, so this cannot take its paths from there; it names them
    (``ROOT``, ``AIRFLOW_HOME``) for the tests once this has run.
    """
    root = Path(__file__).resolve().parents[1]
    home = Path(tempfile.mkdtemp(prefix="nanobanana-tests-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                [
                    _bundle("provider_examples", root / "example_dags"),
                    _bundle("test_dags", root / "tests" / "dags"),
                ]
            ),
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "example_dags"),
            "NANOBANANA_OUTPUT_DIR": str(home / "output"),
        }
    )


_configure_airflow()

from airflow_provider_nanobanana import pacing  # noqa: E402
from airflow_provider_nanobanana.emulator import EmulatorServer, EmulatorSettings  # noqa: E402
from airflow_provider_nanobanana.hooks.apixo import ApixoHook, RetryPolicy  # noqa: E402
from tests.support import (  # noqa: E402
    AIRFLOW_HOME,
    FAST,
    TEST_API_KEY,
    EmulatorAdmin,
    S3Store,
    apixo_connection,
    redis_server,
    s3_connection,
    s3_server,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    settings = EmulatorSettings(api_key=TEST_API_KEY, generation_seconds=0.6, pending_seconds=0.2)
    with EmulatorServer(settings=settings) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    """The running emulator, reset, with ``apixo_default`` pointing at it."""
    settings = emulator_server.emulator.settings
    saved = dataclasses.asdict(settings)
    emulator_server.emulator.reset()
    monkeypatch.setenv("AIRFLOW_CONN_APIXO_DEFAULT", apixo_connection(emulator_server.base_url))
    yield emulator_server
    for name, value in saved.items():
        setattr(settings, name, value)


@pytest.fixture
def emulator_admin(emulator: EmulatorServer) -> Iterator[EmulatorAdmin]:
    """The reset emulator's admin endpoints: the way to steer and inspect it from any process."""
    admin = EmulatorAdmin(emulator.root_url)
    yield admin
    admin.close()


@pytest.fixture
def make_hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ApixoHook]]:
    """Build hooks (optionally on a fresh ``AIRFLOW_CONN_*``); their sync clients are closed afterwards."""
    made: list[ApixoHook] = []

    def make(
        conn_id: str = "apixo_default",
        *,
        connection: str | None = None,
        retry_policy: RetryPolicy = FAST,
        timeout: float | None = 5.0,
    ) -> ApixoHook:
        if connection is not None:
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection)
        hook = ApixoHook(conn_id, retry_policy=retry_policy, timeout=timeout)
        made.append(hook)
        return hook

    yield make
    for hook in made:
        hook.close()


@pytest.fixture(autouse=True)
def fresh_request_budgets() -> None:
    """Every test starts with full budgets and no pause: tests share the emulator's key."""
    pacing.reset_pacers()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real redis-server on a free loopback port, stopped afterwards."""
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server) on loopback for the whole run."""
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_store(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    """A fresh bucket, reached through the ``aws`` connection ``s3_test``."""
    monkeypatch.setenv("AIRFLOW_CONN_S3_TEST", s3_connection(s3_endpoint))
    store = S3Store(s3_endpoint, "s3_test", f"pictures-{uuid.uuid4().hex[:12]}")
    store._client().create_bucket(Bucket=store.bucket)
    return store


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB, made once per run."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=300)
    return AIRFLOW_HOME


# A hang is a failure: in-process tests get pytest's ``timeout`` (pyproject.toml); those that start
# Airflow (a fresh virtualenv, airflow standalone) get this, their services' start-up included.
AIRFLOW_TEST_TIMEOUT = 1200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(name) for name in ("dag", "e2e", "topology")):
            item.add_marker(pytest.mark.unit)
        elif not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(AIRFLOW_TEST_TIMEOUT))


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)

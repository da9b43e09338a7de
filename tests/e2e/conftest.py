"""The end-to-end fixture: one ``airflow standalone`` for the e2e tests, the emulator in its own process.

Both start on free loopback ports and stop after the last e2e test (package scope), so the rest of
the suite does not share the machine with them. Each test starts from a reset emulator.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.standalone import BIN, PASSWORD, Standalone, spawn, wait_until
from tests.support import ROOT, TEST_API_KEY, EmulatorAdmin, LocalReceiver, StatsdReceiver, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Page

E2E_DAGS = Path(__file__).parent / "dags"


@pytest.fixture(scope="package")
def e2e_home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nanobanana-e2e-") as home:
        yield Path(home)


@pytest.fixture(scope="package")
def emulator_process(e2e_home: Path) -> Iterator[EmulatorAdmin]:
    """The emulator as its own process, as APIXO is to Airflow: seen only over HTTP."""
    port = free_port()
    args = [str(BIN / "apixo-emulator"), "--port", str(port), "--api-key", TEST_API_KEY]
    process = spawn(args, {"PATH": str(BIN)}, e2e_home / "emulator.log")
    admin = EmulatorAdmin(f"http://127.0.0.1:{port}")
    try:
        wait_until("the emulator", lambda: _answers(admin), timeout=30, interval=0.1)
        yield admin
    finally:
        admin.close()
        process.terminate()
        process.wait(timeout=10)


def _answers(admin: EmulatorAdmin) -> bool:
    try:
        admin.configure()
    except Exception:
        return False
    return True


@pytest.fixture(scope="package")
def cms() -> Iterator[LocalReceiver]:
    """Where the publish example posts its covers."""
    with LocalReceiver(status=201) as receiver:
        yield receiver


@pytest.fixture(scope="package")
def statsd() -> Iterator[StatsdReceiver]:
    """Where standalone's ``[metrics]`` go: every part's, the triggerer's included."""
    with StatsdReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="package")
def standalone(
    e2e_home: Path, emulator_process: EmulatorAdmin, cms: LocalReceiver, statsd: StatsdReceiver
) -> Iterator[Standalone]:
    base_url = emulator_process.root_url + "/api/v1"
    publish = {"conn_type": "http", "host": "127.0.0.1", "port": cms.port, "schema": "http"}
    airflow = Standalone(
        e2e_home / "airflow",
        {"provider_examples": ROOT / "example_dags", "e2e_dags": E2E_DAGS},
        {
            "AIRFLOW_CONN_CONTENT_PUBLISH": json.dumps(publish),
            "NANOBANANA_OUTPUT_DIR": str(e2e_home / "output"),
            **statsd.environment(),
        },
    )
    airflow.home.mkdir()
    airflow.start()
    try:
        # APIXO connections as users save them, in Airflow's database: workers, triggerers and the
        # api-server read them from there. apixo_callback sends APIXO's webhook to the plugin route.
        airflow.save_connection("apixo_default", "apixo", host=base_url, password=TEST_API_KEY)
        callback = json.dumps({"callback_base_url": airflow.url})
        airflow.save_connection(
            "apixo_callback", "apixo", host=base_url, password=TEST_API_KEY, extra=callback
        )
        airflow.create_pool("apixo", 1000, include_deferred=True)  # the batch example's, as documented
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture
def emulator_admin(emulator_process: EmulatorAdmin) -> EmulatorAdmin:
    """The e2e emulator, reset for this test."""
    emulator_process.reset()
    emulator_process.configure(
        generation_seconds=2, pending_seconds=0.5, latency_seconds=0, callback_retry_delays=[1, 2, 4]
    )
    return emulator_process


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; session-scoped so that a missing browser skips before standalone starts."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium when run as root)")
    return executable


@pytest.fixture
def page(chromium: str, standalone: Standalone) -> Iterator[Page]:
    """A headless Chromium page signed in to standalone's UI, tall enough for the connection form."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(f"{standalone.url}/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{standalone.url}/")
        yield page
        browser.close()

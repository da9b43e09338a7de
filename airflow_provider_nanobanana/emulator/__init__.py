"""An in-package emulator of APIXO's task API, for tests, demos and local DAG runs without a real key.

It speaks the documented contract over real HTTP, serves real PNG/JPEG results, delivers callback-mode
tasks to loopback webhooks with APIXO's retries, and exposes fault switches (failed tasks, HTTP
429/5xx, slow answers, lost, late or doubled callbacks) that tests drive in-process or over admin
endpoints.
"""

from __future__ import annotations

from airflow_provider_nanobanana.emulator.app import create_app
from airflow_provider_nanobanana.emulator.server import EmulatorServer
from airflow_provider_nanobanana.emulator.state import (
    DEFAULT_API_KEY,
    EmulatedTask,
    Emulator,
    EmulatorSettings,
)

__all__ = ["DEFAULT_API_KEY", "EmulatedTask", "Emulator", "EmulatorServer", "EmulatorSettings", "create_app"]

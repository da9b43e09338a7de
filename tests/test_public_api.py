"""Every import path DAGs and plugins use keeps working, whatever moved behind it."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = [
    ("airflow_provider_nanobanana.hooks.apixo", "ApixoHook"),
    ("airflow_provider_nanobanana.hooks.apixo", "RetryPolicy"),
    ("airflow_provider_nanobanana.operators.apixo", "ApixoGenerateOperator"),
    ("airflow_provider_nanobanana.operators.apixo", "XCOM_TASK_ID_KEY"),
    ("airflow_provider_nanobanana.operators.nanobanana", "NanoBananaGenerateOperator"),
    ("airflow_provider_nanobanana.operators.nanobanana", "XCOM_TASK_ID_KEY"),
    ("airflow_provider_nanobanana.sensors.apixo", "ApixoTaskSensor"),
    ("airflow_provider_nanobanana.sensors.nanobanana", "NanoBananaTaskSensor"),
    ("airflow_provider_nanobanana.triggers.apixo", "ApixoTaskTrigger"),
    ("airflow_provider_nanobanana.triggers.nanobanana", "NanoBananaTaskTrigger"),
    ("airflow_provider_nanobanana.decorators.nanobanana", "nanobanana_task"),
    ("airflow_provider_nanobanana.links", "GeneratedImageLink"),
    ("airflow_provider_nanobanana.plugin", "NanoBananaCallbackPlugin"),
    ("airflow_provider_nanobanana.emulator", "EmulatorServer"),
    ("airflow_provider_nanobanana.emulator", "EmulatorSettings"),
    ("airflow_provider_nanobanana.exceptions", "ApixoError"),
    ("airflow_provider_nanobanana.exceptions", "ApixoTaskRejectedError"),
]


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_the_public_import_path_works(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is not None


def test_the_fronts_are_the_generic_classes_with_nano_bananas_defaults() -> None:
    from airflow_provider_nanobanana.sensors.apixo import ApixoTaskSensor
    from airflow_provider_nanobanana.sensors.nanobanana import NanoBananaTaskSensor
    from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger
    from airflow_provider_nanobanana.triggers.nanobanana import NanoBananaTaskTrigger

    assert issubclass(NanoBananaTaskSensor, ApixoTaskSensor)
    assert issubclass(NanoBananaTaskTrigger, ApixoTaskTrigger)

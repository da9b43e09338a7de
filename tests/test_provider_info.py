"""Airflow discovers the provider: entry point, provider-info schema, connection form, `providers list`."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path

import jsonschema

from airflow_provider_nanobanana import api, pacing
from airflow_provider_nanobanana import get_provider_info as provider_info
from airflow_provider_nanobanana.get_provider_info import (
    CONN_FIELDS,
    DEFAULT_BASE_URL,
    PROVIDERS,
    RELABELING,
    get_provider_info,
)
from airflow_provider_nanobanana.hooks import settings

DISTRIBUTION = "airflow-provider-nanobanana"


def test_entry_point_and_package_name_match_the_distribution() -> None:
    (entry_point,) = [
        ep for ep in metadata.entry_points(group="apache_airflow_provider") if ep.dist.name == DISTRIBUTION
    ]  # type: ignore[union-attr]

    assert entry_point.load() is get_provider_info
    assert get_provider_info()["package-name"] == DISTRIBUTION


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads((resources.files("airflow") / "provider_info.schema.json").read_text())

    jsonschema.validate(get_provider_info(), schema)


def test_connection_form() -> None:
    (connection,) = get_provider_info()["connection-types"]
    behaviour = connection["ui-field-behaviour"]

    assert connection["connection-type"] == "apixo"
    assert connection["hook-class-name"] == "airflow_provider_nanobanana.hooks.apixo.ApixoHook"
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert behaviour["placeholders"]["host"] == api.DEFAULT_BASE_URL
    assert {"schema", "login", "port", "extra"} <= set(behaviour["hidden-fields"])
    assert connection["conn-fields"]["provider"]["schema"]["enum"] == list(api.PROVIDERS)
    assert connection["conn-fields"]["timeout"]["schema"]["type"] == ["number", "null"]
    budget = connection["conn-fields"]["requests_per_minute"]["schema"]
    assert (budget["minimum"], budget["maximum"]) == (1, 10_000)
    assert connection["conn-fields"]["rate_limit_storage"]["schema"]["type"] == ["string", "null"]
    assert connection["conn-fields"]["max_in_flight"]["schema"]["minimum"] == 1
    assert connection["conn-fields"]["callback_base_url"]["schema"]["type"] == ["string", "null"]


UI_FORM = """
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
(apixo,) = [hook for hook in HookMetaService.hook_meta_data() if hook.connection_type == "apixo"]
print("FORM", apixo.model_dump_json())
"""
"""What the UI's connection form is built from, as this Airflow's api-server builds it (its own process:
before 3.2 it stands mocks in for the form libraries in ``sys.modules``)."""


def test_this_airflows_ui_builds_the_whole_form() -> None:
    """From provider info on 3.2+, from the hook's form methods before: the same form either way."""
    built = subprocess.run([sys.executable, "-c", UI_FORM], capture_output=True, text=True, check=True)
    (form,) = [json.loads(line[5:]) for line in built.stdout.splitlines() if line.startswith("FORM ")]

    fields = form["extra_fields"]
    assert list(fields) == list(CONN_FIELDS)
    for name, spec in CONN_FIELDS.items():
        assert fields[name]["schema"]["title"] == spec["label"]
        assert fields[name]["description"] == spec.get("description")
        assert fields[name]["value"] == spec["schema"].get("default")
    assert fields["provider"]["schema"]["enum"] == PROVIDERS
    standard = form["standard_fields"]
    assert {name: standard[name]["title"] for name in RELABELING} == RELABELING
    assert standard["host"]["placeholder"] == DEFAULT_BASE_URL
    assert all(standard[name]["hidden"] for name in ("url_schema", "login", "port"))


def test_literals_agree_with_the_api_module() -> None:
    """get_provider_info must not import the package (Airflow loads it early); its copies must agree."""
    assert DEFAULT_BASE_URL == api.DEFAULT_BASE_URL
    assert tuple(PROVIDERS) == api.PROVIDERS
    assert provider_info.DEFAULT_REQUESTS_PER_MINUTE == pacing.DEFAULT_REQUESTS_PER_MINUTE
    assert provider_info.APIXO_REQUESTS_PER_MINUTE == pacing.APIXO_REQUESTS_PER_MINUTE
    assert provider_info.DEFAULT_MAX_IN_FLIGHT == settings.DEFAULT_MAX_IN_FLIGHT


def test_airflow_lists_the_provider_and_its_connection_type() -> None:
    airflow = str(Path(sys.executable).parent / "airflow")

    listed = subprocess.run(
        [airflow, "providers", "list", "-o", "json"], capture_output=True, text=True, check=True
    )
    hooks = subprocess.run(
        [airflow, "providers", "hooks", "-o", "json"], capture_output=True, text=True, check=True
    )
    links = subprocess.run(
        [airflow, "providers", "links", "-o", "json"], capture_output=True, text=True, check=True
    )

    # The JSON is the last line: Airflow 3.0 logs to stdout before it.
    assert DISTRIBUTION in {
        provider["package_name"] for provider in json.loads(listed.stdout.splitlines()[-1])
    }
    apixo = [hook for hook in json.loads(hooks.stdout.splitlines()[-1]) if hook["connection_type"] == "apixo"]
    assert apixo and apixo[0]["class"] == "airflow_provider_nanobanana.hooks.apixo.ApixoHook"
    assert "airflow_provider_nanobanana.links.GeneratedImageLink" in links.stdout


def test_airflow_loads_the_callback_route_plugin() -> None:
    """Callback mode's webhook route reaches the api-server through the ``airflow.plugins`` entry point."""
    airflow = str(Path(sys.executable).parent / "airflow")

    listed = subprocess.run([airflow, "plugins", "-o", "json"], capture_output=True, text=True, check=True)

    (plugin,) = [plugin for plugin in json.loads(listed.stdout) if plugin["name"] == "nanobanana_callbacks"]
    (app,) = plugin["fastapi_apps"]
    assert app["url_prefix"] == "/nanobanana"

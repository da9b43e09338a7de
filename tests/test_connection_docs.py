"""The README's connection examples: each is one the hook reads as documented, and each URI round-trips."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from airflow.models.connection import Connection as StoredConnection
from airflow.sdk import Connection

from airflow_provider_nanobanana.hooks.settings import ConnectionSettings
from tests.support import ROOT

if TYPE_CHECKING:
    from collections.abc import Callable

KEY = "test-key-123"
SECTION = re.search(r"^## The connection$(.*?)^## ", (ROOT / "README.md").read_text(), re.M | re.S)
assert SECTION is not None
EXAMPLES = [
    value.replace("<API key>", KEY)
    for value in re.findall(r"^export AIRFLOW_CONN_APIXO_DEFAULT='(.*)'$", SECTION.group(1), re.M)
]
JSON_FORM, *URIS = EXAMPLES

# Workers parse AIRFLOW_CONN_* with the task SDK's Connection from Airflow 3.1, with the cli's class on 3.0.
WORKER_CONNECTION = Connection if hasattr(Connection, "from_uri") else StoredConnection


def parse_as_cli(uri: str) -> StoredConnection:
    return StoredConnection(conn_id="apixo_default", uri=uri)


def parse_as_worker(uri: str) -> Connection | StoredConnection:
    if WORKER_CONNECTION is StoredConnection:
        return parse_as_cli(uri)
    return Connection.from_uri(uri, conn_id="apixo_default")


PARSERS: dict[str, Callable[[str], Connection | StoredConnection]] = {
    "worker": parse_as_worker,
    "cli": parse_as_cli,
}


def test_the_readme_shows_the_json_and_two_uris() -> None:
    assert JSON_FORM.startswith("{") and len(URIS) == 2


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("uri", URIS)
def test_each_uri_round_trips(uri: str, parser: str) -> None:
    assert PARSERS[parser](uri).get_uri() == uri


def test_the_uri_is_the_same_connection_as_the_json() -> None:
    from_json = ConnectionSettings.from_connection(
        WORKER_CONNECTION.from_json(JSON_FORM, conn_id="apixo_default")
    )
    for parse in PARSERS.values():
        assert ConnectionSettings.from_connection(parse(URIS[0])) == from_json
    assert (from_json.base_url, from_json.api_key) == ("https://api.apixo.ai/api/v1", KEY)
    assert (from_json.provider, from_json.callback_base_url) == ("value", "https://airflow.example.com")


def test_the_emulator_uri_speaks_plain_http_on_its_port() -> None:
    settings = ConnectionSettings.from_connection(PARSERS["worker"](URIS[1]))
    assert (settings.base_url, settings.api_key) == ("http://127.0.0.1:8089/api/v1", KEY)

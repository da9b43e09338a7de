"""The emulator as a server and a command: the app, start and stop, the CLI's flags and output."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from airflow_provider_nanobanana.emulator import Emulator, EmulatorServer, EmulatorSettings, cli, create_app


def test_create_app_serves_the_given_emulator() -> None:
    emulator = Emulator(EmulatorSettings(api_key="k"))
    app = create_app(emulator)
    assert any(getattr(route, "path", "") == "/api/v1/generateTask/{model}" for route in app.routes)


def test_server_exposes_urls_and_stops(emulator: Emulator) -> None:
    with EmulatorServer(settings=EmulatorSettings(api_key=None)) as other:
        assert other.base_url == f"http://127.0.0.1:{other.port}/api/v1" and other.port > 0
        assert other.api_key
        assert httpx.get(other.root_url + "/_emulator/health", trust_env=False).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(other.root_url + "/_emulator/health", trust_env=False)


def test_cli_parser_defaults_and_flags() -> None:
    parser = cli.build_parser()
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port, defaults.api_key, defaults.any_key) == (
        "127.0.0.1",
        8089,
        "apixo-emulator-key",
        False,
    )
    args = parser.parse_args(
        ["--port", "0", "--any-key", "--generation-seconds", "1.5", "--latency-seconds", "2"]
    )
    settings = cli.settings_from_args(args)
    assert (settings.api_key, settings.generation_seconds, settings.latency_seconds) == (None, 1.5, 2.0)
    assert cli.settings_from_args(parser.parse_args(["--api-key", "k"])).api_key == "k"
    assert cli.settings_from_args(defaults).model_generation_seconds == {}
    for bad in (["--api-key", "k", "--any-key"], ["--latency-seconds", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_cli_help_names_the_default_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps help to the terminal's width
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    assert "the only bearer token accepted (default: apixo-emulator-key)" in capsys.readouterr().out


def test_cli_model_seconds_are_repeatable_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    flags = ["--model-seconds", "veo-3-1=45", "--model-seconds", "flux-2=8", "--model-seconds", "x=0"]
    settings = cli.settings_from_args(parser.parse_args(flags))
    assert settings.model_generation_seconds == {"veo-3-1": 45.0, "flux-2": 8.0, "x": 0.0}
    for bad in ("veo-3-1", "veo-3-1=", "=45", "veo-3-1=-1", "veo-3-1=slow", "veo-3-1=inf", "veo-3-1=nan"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--model-seconds", bad])
        error = capsys.readouterr().err
        assert "argument --model-seconds: expected MODEL=SECONDS" in error and repr(bad) in error, error


def test_cli_main_prints_the_connection(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "wait_for_stop", lambda: None)
    assert cli.main(["--port", "0", "--api-key", "secret-k"]) == 0
    lines = capsys.readouterr().out.splitlines()
    out = [line for line in lines if line.startswith(("APIXO emulator", "export "))]  # not log lines
    assert len(out) == 2, lines
    assert out[0].startswith("APIXO emulator serving at http://127.0.0.1:") and out[0].endswith("/api/v1")
    prefix = "export AIRFLOW_CONN_APIXO_DEFAULT='"
    assert out[1].startswith(prefix) and out[1].endswith("'")
    conn = json.loads(out[1][len(prefix) : -1])
    assert conn == {"conn_type": "apixo", "host": out[0].rsplit(" ", 1)[1], "password": "secret-k"}


def test_stop_is_not_held_up_by_injected_latency() -> None:
    server = EmulatorServer(settings=EmulatorSettings(latency_seconds=30)).start()
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.base_url + "/apikeys/current-balance", headers=headers, timeout=0.1, trust_env=False)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.5

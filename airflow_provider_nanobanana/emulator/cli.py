"""``apixo-emulator``: serve the emulator in the foreground for demos and manual DAG runs.

It prints the base URL and a ready-to-export Airflow connection, so a local Airflow can talk to it
with no real APIXO key.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from typing import TYPE_CHECKING

from airflow_provider_nanobanana.emulator.server import EmulatorServer
from airflow_provider_nanobanana.emulator.state import DEFAULT_API_KEY, EmulatorSettings

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["build_parser", "connection_env_line", "main", "settings_from_args"]

_stop = threading.Event()


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _model_seconds(text: str) -> tuple[str, float]:
    """``MODEL=SECONDS``, e.g. ``veo-3-1=45``: one model's generation time."""
    model, _, seconds = text.partition("=")
    with contextlib.suppress(ValueError):
        value = float(seconds)
        if model.strip() and math.isfinite(value) and value >= 0:
            return model.strip(), value
    raise argparse.ArgumentTypeError(
        f"expected MODEL=SECONDS with a non-negative number of seconds (e.g. veo-3-1=45), got {text!r}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line: where to listen, which key to accept, how slow to be (per model too)."""
    defaults = EmulatorSettings()
    parser = argparse.ArgumentParser(prog="apixo-emulator", description="Serve an emulated APIXO task API.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8089, help="port, 0 picks a free one (default: %(default)s)"
    )
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--api-key", default=DEFAULT_API_KEY, help="the only bearer token accepted (default: %(default)s)"
    )
    keys.add_argument("--any-key", action="store_true", help="accept any non-empty bearer token")
    parser.add_argument(
        "--generation-seconds",
        type=_non_negative,
        default=defaults.generation_seconds,
        help="time from creation to the terminal state (default: %(default)s)",
    )
    parser.add_argument(
        "--generation-seconds-max",
        type=_non_negative,
        default=None,
        help="draw each task's generation time from --generation-seconds to this (default: fixed)",
    )
    parser.add_argument(
        "--model-seconds",
        type=_model_seconds,
        action="append",
        metavar="MODEL=SECONDS",
        help="generation time of one model, overriding the two above for it; repeatable (default: none)",
    )
    parser.add_argument(
        "--requests-per-minute",
        type=_positive_int,
        default=None,
        help="enforce this many API requests per rolling minute per key, 429 beyond (default: no limit)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=_non_negative,
        default=defaults.latency_seconds,
        help="extra delay before every API answer (default: %(default)s)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    """Emulator settings for parsed arguments."""
    return EmulatorSettings(
        api_key=None if args.any_key else args.api_key,
        generation_seconds=args.generation_seconds,
        generation_seconds_max=args.generation_seconds_max,
        model_generation_seconds=dict(args.model_seconds or ()),
        requests_per_minute=args.requests_per_minute,
        latency_seconds=args.latency_seconds,
    )


def connection_env_line(base_url: str, api_key: str) -> str:
    """An ``export`` line defining the ``apixo_default`` Airflow connection for this emulator."""
    conn = json.dumps({"conn_type": "apixo", "host": base_url, "password": api_key})
    return f"export AIRFLOW_CONN_APIXO_DEFAULT='{conn}'"


def wait_for_stop() -> None:
    """Block until SIGTERM (Ctrl-C raises KeyboardInterrupt, handled by the caller)."""
    while not _stop.wait(0.5):
        pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _stop.set()


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; returns the process exit code."""
    args = build_parser().parse_args(argv)
    server = EmulatorServer(settings=settings_from_args(args), host=args.host, port=args.port)
    _stop.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        print(f"apixo-emulator: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"APIXO emulator serving at {server.base_url}", flush=True)
        print(connection_env_line(server.base_url, server.api_key), flush=True)
        wait_for_stop()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0

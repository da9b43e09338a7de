"""`make demo`: run the text-to-image example DAG with `airflow dags test` and list the images it stored.

Without APIXO_API_KEY (or an AIRFLOW_CONN_APIXO_DEFAULT of your own) it starts the built-in APIXO
emulator on loopback, so the demo needs no account and no network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from airflow_provider_nanobanana.api import DEFAULT_BASE_URL
from airflow_provider_nanobanana.emulator import EmulatorServer, EmulatorSettings

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "example_nanobanana_text_to_image"
HOME = ROOT / ".airflow-demo"
OUTPUT = ROOT / "output"


def airflow(*args: str, env: dict[str, str], log: Path) -> None:
    """Run the venv's `airflow` CLI, its output to a log file; show the log's tail on failure."""
    command = [str(Path(sys.executable).parent / "airflow"), *args]
    with log.open("w") as out:
        result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode:
        sys.stdout.write("".join(log.read_text().splitlines(keepends=True)[-40:]))
        raise SystemExit(f"`airflow {' '.join(args)}` failed (exit {result.returncode}); full log: {log}")


def main() -> None:
    HOME.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "NANOBANANA_OUTPUT_DIR": str(OUTPUT),
    }
    with ExitStack() as stack:
        if api_key := os.environ.get("APIXO_API_KEY"):
            host = os.environ.get("APIXO_BASE_URL", DEFAULT_BASE_URL)
            env["AIRFLOW_CONN_APIXO_DEFAULT"] = json.dumps(
                {"conn_type": "apixo", "host": host, "password": api_key}
            )
            print(f"Using APIXO at {host} (APIXO_API_KEY is set).")
        elif "AIRFLOW_CONN_APIXO_DEFAULT" in os.environ:
            print("Using the connection in AIRFLOW_CONN_APIXO_DEFAULT.")
        else:
            server = stack.enter_context(EmulatorServer(settings=EmulatorSettings(generation_seconds=3.0)))
            conn = {"conn_type": "apixo", "host": server.base_url, "password": server.api_key}
            env["AIRFLOW_CONN_APIXO_DEFAULT"] = json.dumps(conn)
            print(f"No APIXO_API_KEY: using the built-in APIXO emulator at {server.base_url}")

        print("Preparing the Airflow metadata DB ...")
        airflow("db", "migrate", env=env, log=HOME / "db-migrate.log")
        print(f"Running `airflow dags test {DAG_ID}` ...")
        airflow("dags", "test", DAG_ID, env=env, log=HOME / "dags-test.log")

    # The operator logs each image it stored under its output_path ("Stored <uri> (<n> bytes)").
    stored = re.findall(r"Stored (file://\S+) \(\d+ bytes\)", (HOME / "dags-test.log").read_text())
    if not stored:
        raise SystemExit(f"The DAG ran but stored no image; see {HOME / 'dags-test.log'}")
    print(f"Stored images (output_path {OUTPUT}):")
    for uri in dict.fromkeys(stored):
        print(f"  {uri}")


if __name__ == "__main__":
    main()

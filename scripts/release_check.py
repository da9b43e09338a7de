"""The release check: build what users download, and use it as they would.

The test suite runs against the source tree (an editable install); this checks the built artefacts:
the sdist and the wheel are built (``uv build``) and their metadata checked (``twine check``), both
carry LICENSE and NOTICE, and the wheel (never the source tree) is installed into a fresh venv with
the Airflow this checkout's venv runs. There ``airflow providers list`` must show the package at this
version, the example DAGs must import, ``apixo-emulator`` must start, and one example must generate an
image against it with ``airflow dags test``. Run by ``make test`` (and ``make release-check``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
from airflow import __version__ as airflow_version

from airflow_provider_nanobanana import __version__

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "airflow-provider-nanobanana"
EXAMPLE = "example_nanobanana_text_to_image"
UV = [sys.executable, "-m", "uv"]


def step(what: str) -> None:
    print(f"== release check: {what}", flush=True)


def run(*command: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run ``command``; its output, or exit with it when the command fails."""
    done = subprocess.run(
        [str(part) for part in command], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout + done.stderr


def build(dist: Path) -> tuple[Path, Path]:
    step(f"uv build, then twine check ({DISTRIBUTION} {__version__})")
    run(*UV, "build", "--quiet", "--out-dir", dist, ROOT)
    [sdist], [wheel] = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
    expected = f"airflow_provider_nanobanana-{__version__}"
    assert wheel.name.startswith(expected) and sdist.name.startswith(expected), (wheel, sdist)
    with zipfile.ZipFile(wheel) as archive:
        _require_licenses(wheel.name, archive.namelist())
    with tarfile.open(sdist) as archive:
        _require_licenses(sdist.name, archive.getnames())
    return sdist, wheel


def _require_licenses(archive: str, names: list[str]) -> None:
    for required in ("LICENSE", "NOTICE"):
        if not any(Path(name).name == required for name in names):
            sys.exit(f"failed: {archive} has no {required}")


def install(wheel: Path, venv: Path) -> Path:
    step(f"a fresh venv with the wheel and apache-airflow=={airflow_version}")
    run(*UV, "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    run(
        *UV,
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        f"{wheel}[emulator]",
        f"apache-airflow=={airflow_version}",
    )
    return venv / "bin"


def airflow_environment(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        NANOBANANA_OUTPUT_DIR=str(home / "output"),
    )
    return env


def check_installed(bin_dir: Path, env: dict[str, str], home: Path) -> None:
    step("airflow providers list shows the package at this version")
    providers = json.loads(
        run(bin_dir / "airflow", "providers", "list", "--output", "json", env=env, cwd=home)
    )
    listed = {provider["package_name"]: provider["version"] for provider in providers}
    if listed.get(DISTRIBUTION) != __version__:
        sys.exit(f"failed: airflow providers list shows {DISTRIBUTION} as {listed.get(DISTRIBUTION)!r}")
    step("the example DAGs import, from the installed wheel")
    script = (
        "import airflow_provider_nanobanana as p, json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()}, "
        "'dags': sorted(bag.dag_ids), 'from': p.__file__}))\n"
    )
    found = json.loads(
        run(bin_dir / "python", "-c", script, ROOT / "example_dags", env=env, cwd=home).splitlines()[-1]
    )
    if found["errors"] or EXAMPLE not in found["dags"]:
        sys.exit(f"failed: the example DAGs: {found}")
    if not found["from"].startswith(str(bin_dir.parent)):
        sys.exit(f"failed: the package was imported from {found['from']}, not the installed wheel")


def run_example(bin_dir: Path, env: dict[str, str], home: Path) -> None:
    step("apixo-emulator starts")
    port = _free_port()
    emulator = subprocess.Popen(
        [bin_dir / "apixo-emulator", "--port", str(port), "--generation-seconds", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/_emulator/health", emulator)
        step(f"airflow dags test {EXAMPLE} against it")
        connection = {
            "conn_type": "apixo",
            "host": f"http://127.0.0.1:{port}/api/v1",
            "password": "apixo-emulator-key",
        }
        env = {**env, "AIRFLOW_CONN_APIXO_DEFAULT": json.dumps(connection)}
        run(bin_dir / "airflow", "db", "migrate", env=env, cwd=home)
        output = run(bin_dir / "airflow", "dags", "test", EXAMPLE, env=env, cwd=home)
        finished = "".join(line for line in output.splitlines() if "DagRun Finished" in line)
        if "state=success" not in finished or not list((home / "output").glob("*.png")):
            sys.exit(f"failed: {EXAMPLE} did not store an image\n{output[-4000:]}")
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("failed: apixo-emulator exited at start")
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit("failed: apixo-emulator did not answer")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="nanobanana-release-") as scratch:
        workspace = Path(scratch)
        _, wheel = build(workspace / "dist")
        bin_dir = install(wheel, workspace / "venv")
        home = workspace / "home"
        home.mkdir()
        env = airflow_environment(home)
        check_installed(bin_dir, env, home)
        run_example(bin_dir, env, home)
    step("passed")


if __name__ == "__main__":
    main()

"""A real Airflow for end-to-end tests: ``airflow standalone`` with the APIXO emulator beside it.

Scheduler, DAG processor, triggerer and api-server run as Airflow runs them (LocalExecutor on
SQLite), in their own process group, on free loopback ports. Tests drive it through the REST API and
see the emulator through its admin endpoints, exactly as across any two machines; the harness
also finds Airflow's processes by their titles to kill, pause or add them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import psutil

from tests.support import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

BIN = Path(sys.executable).parent
PASSWORD = "e2e-admin-password"
FINISHED_RUN_STATES = ("success", "failed")
T = TypeVar("T")


def wait_until(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll ``check`` until it returns something other than None (or False); that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own process group, output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


class Standalone:
    """One ``airflow standalone`` in ``home``, with its environment, REST client and processes."""

    def __init__(self, home: Path, dag_folders: dict[str, Path], extra_env: dict[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = self._environment(dag_folders, extra_env)
        self.log = home / "standalone.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._extra: list[subprocess.Popen[bytes]] = []
        self._api: httpx.Client | None = None

    def _environment(self, dag_folders: dict[str, Path], extra_env: dict[str, str]) -> dict[str, str]:
        bundles = [
            {
                "name": name,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(path)},
            }
            for name, path in dag_folders.items()
        ]
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(
            {
                # Standalone starts its parts as plain ``airflow``: the venv's bin must come first.
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # A killed triggerer's triggers move to a live one after this many seconds.
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                # Retries come after seconds, not the default 5 minutes.
                "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
                # Airflow 3.0 refuses the REST API's ?deserialize=true without it (later ones ignore it).
                "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra_env)
        return env

    # --- life cycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 180) -> None:
        (self.home / "simple_auth_manager_passwords.json.generated").write_text(
            json.dumps({"admin": PASSWORD})
        )
        self._process = spawn([str(BIN / "airflow"), "standalone"], self.env, self.log)
        try:
            wait_until("airflow standalone to be healthy", self._healthy, timeout)
        except (TimeoutError, RuntimeError) as error:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{error}\n{tail}") from None

    def _healthy(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError("airflow standalone exited")
        try:
            health = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all(health.get(part, {}).get("status") == "healthy" for part in parts)

    def stop(self) -> None:
        """Stop standalone's group and the triggerers added, then any of their processes left.

        Task processes have process groups of their own, so the tree is listed before stopping.
        """
        if self._api is not None:
            self._api.close()
        tree = self.processes()
        started = [process for process in [self._process, *self._extra] if process is not None]
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for leftover in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def log_lines(self, *words: str) -> str:
        """Lines of standalone's output (scheduler, triggerer, api-server) that mention every word."""
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if all(word in line for word in words))

    def task_log(self, dag_id: str, run_id: str, task_id: str, lines: int = 60) -> str:
        """The end of every try's log of a task (mapped ones included), for failure messages."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        tails = []
        for log in sorted(folder.rglob("*.log")):
            text = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            tails.append(f"--- {log.relative_to(folder)}\n{text}")
        return "\n".join(tails) or f"(no log under {folder})"

    # --- processes ------------------------------------------------------------------------------

    def processes(self, title: str = "") -> list[psutil.Process]:
        """Live processes started by this harness (and their descendants) whose title has ``title``.

        Airflow retitles its processes (``airflow worker -- <ti id>``), which also hides their
        environment, so processes are found through the tree rather than by ``AIRFLOW_HOME``.
        """
        found = []
        for root in [self._process, *self._extra]:
            if root is None:
                continue
            try:
                top = psutil.Process(root.pid)
                family = [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for process in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    if process.status() != psutil.STATUS_ZOMBIE and title in " ".join(process.cmdline()):
                        found.append(process)
        return found

    def task_process(self, ti_id: str) -> psutil.Process | None:
        """The process running a task instance's code (not its supervisor)."""
        matches = [
            p
            for p in self.processes(f"airflow worker -- {ti_id}")
            if "LocalExecutor" not in " ".join(p.cmdline())
        ]
        return matches[0] if matches else None

    def triggerers(self) -> list[psutil.Process]:
        """Triggerer main processes (each runs its triggers in a child process)."""
        return [
            p
            for p in self.processes("triggerer")
            if p.parent() is None or "triggerer" not in " ".join(p.parent().cmdline())
        ]

    def start_triggerer(self) -> subprocess.Popen[bytes]:
        process = spawn([str(BIN / "airflow"), "triggerer"], self.env, self.home / "triggerer-extra.log")
        self._extra.append(process)
        return process

    # --- REST API -------------------------------------------------------------------------------

    @property
    def api(self) -> httpx.Client:
        if self._api is None:
            answer = httpx.post(
                f"{self.url}/auth/token", json={"username": "admin", "password": PASSWORD}, timeout=30
            )
            answer.raise_for_status()
            token = answer.json()["access_token"]
            self._api = httpx.Client(
                base_url=f"{self.url}/api/v2",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
                trust_env=False,
            )
        return self._api

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.api.request(method, path, **kwargs)
        if answer.is_error:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def wait_for_dags(self, *dag_ids: str, timeout: float = 120) -> None:
        def parsed() -> bool:
            return all(self.api.get(f"/dags/{dag_id}").status_code == 200 for dag_id in dag_ids)

        wait_until(f"DAGs {dag_ids} to be parsed", parsed, timeout)

    def unpause(self, dag_id: str) -> None:
        self._json("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def save_connection(self, conn_id: str, conn_type: str, **fields: Any) -> None:
        """Save a connection in Airflow's database through the REST API, as the UI's form does."""
        self._json("POST", "/connections", json={"connection_id": conn_id, "conn_type": conn_type, **fields})

    def create_pool(self, name: str, slots: int, *, include_deferred: bool) -> None:
        body = {"name": name, "slots": slots, "include_deferred": include_deferred}
        self._json("POST", "/pools", json=body)

    def trigger(self, dag_id: str, **conf: Any) -> str:
        """Unpause the DAG and start a run dated now, as the UI's trigger button does; its run id."""
        self.unpause(dag_id)
        now = datetime.now(UTC).isoformat()
        run = self._json("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": now, "conf": conf})
        run_id = str(run["dag_run_id"])
        # Airflow 3.0.6's api-server may answer the POST before its session commits: a read right
        # after it can find no such run. Wait until it can be read, as later reads assume.
        path = f"/dags/{dag_id}/dagRuns/{run_id}"
        wait_until(f"run {run_id} to be readable", lambda: self.api.get(path).is_success, 30, interval=0.2)
        return run_id

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        answer = self._json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in answer["task_instances"]}

    def task_instances(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every task instance of a (mapped) task in a run, in map index order."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        answer = self._json("GET", path, params={"limit": 1000})
        found = [ti for ti in answer["task_instances"] if ti["task_id"] == task_id]
        return sorted(found, key=lambda ti: int(ti["map_index"]))

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self._json("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120) -> str:
        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in FINISHED_RUN_STATES else None

        return wait_until(f"{dag_id} run {run_id} to finish", finished, timeout)

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))

    def wait_for_trigger_assigned(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """Wait until the task is deferred and a triggerer runs its trigger; that triggerer's job."""

        def assigned() -> dict[str, Any] | None:
            ti = self.task_instance(dag_id, run_id, task_id)
            return ti["triggerer_job"] if ti["state"] == "deferred" else None

        return wait_until(f"{dag_id}.{task_id} deferred on a triggerer", assigned, timeout=120)

    def xcom_or_none(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        answer = self.api.get(path, params={"deserialize": True, "map_index": map_index})
        return answer.json()["value"] if answer.status_code == 200 else None

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self._json("GET", path, params={"deserialize": True, "map_index": map_index})["value"]

    def extra_links(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
        """The links the UI shows on the task instance's page, by name."""
        answer = self._json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links")
        return dict(answer["extra_links"])

    def clear(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Clear one task instance as a user would in the UI (its run starts again).

        A scheduler still finishing the run when the clear lands can leave it in its old state
        (seen once on Airflow 3.0.6, right after a killed task failed it): then, as the user would,
        clear it again once it has had 15 s to start.
        """
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [task_id],
            "only_failed": False,
            "reset_dag_runs": True,
        }
        before = self.run_state(dag_id, run_id)
        for attempt in (1, 2):
            self._json("POST", f"/dags/{dag_id}/clearTaskInstances", json=body)
            try:
                wait_until(
                    f"{dag_id} run {run_id} to start again",
                    lambda: self.run_state(dag_id, run_id) != before,
                    15,
                )
                return
            except TimeoutError:
                if attempt == 2:
                    raise

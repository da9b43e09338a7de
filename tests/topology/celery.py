"""Airflow as teams run it past one box: Postgres, CeleryExecutor on Redis, two workers, two triggerers.

Every part is its own ``airflow`` command (scheduler, DAG processor, api-server, each triggerer and
Celery worker), as separate machines would run them, each on its own log-server port. The harness
keeps the REST client and process tree of :class:`~tests.e2e.standalone.Standalone`; only how Airflow
is configured, started and found healthy differs.
"""

from __future__ import annotations

import contextlib
import subprocess
from typing import TYPE_CHECKING

import httpx
import psutil

from tests.e2e.standalone import BIN, PASSWORD, Standalone, spawn, wait_until
from tests.support import free_port

if TYPE_CHECKING:
    from pathlib import Path

WORKER_CONCURRENCY = 4


def kill_family(process: psutil.Process) -> None:
    """SIGKILL a process and its children at once, as the kernel's OOM killer or a lost node would."""
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


class CeleryAirflow(Standalone):
    """Postgres and Redis must already run; ``start`` migrates the database and starts every part."""

    def __init__(
        self,
        home: Path,
        dag_folders: dict[str, Path],
        extra_env: dict[str, str],
        *,
        database_url: str,
        broker_url: str,
    ) -> None:
        celery = {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "32",
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database_url.replace("+psycopg2", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            # A worker's tasks are retried this soon after its heartbeats stop (default: 5 minutes).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        }
        super().__init__(home, dag_folders, {**celery, **extra_env})
        self.logs = home / "logs-of-parts"
        self._workers = 0
        self.triggerer_jobs: dict[int, subprocess.Popen[bytes]] = {}
        """Each live triggerer's process, by the id of the job it runs."""

    def start(self, timeout: float = 240) -> None:
        (self.home / "simple_auth_manager_passwords.json.generated").write_text(f'{{"admin": "{PASSWORD}"}}')
        self.logs.mkdir(exist_ok=True)
        migrate = [str(BIN / "airflow"), "db", "migrate"]
        subprocess.run(migrate, env=self.env, check=True, capture_output=True, timeout=300)
        for part in ("api-server", "scheduler", "dag-processor"):
            self._start(part, [part])
        for _ in range(2):
            self.start_worker()
        try:
            for _ in range(2):
                self.start_triggerer(timeout)
            wait_until("Airflow's parts to be healthy", self._healthy, timeout)
            wait_until("both Celery workers", self._workers_ready, timeout)
        except (TimeoutError, RuntimeError, httpx.HTTPError) as error:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{error}\n{tail}") from None

    def _start(self, name: str, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        process = spawn([str(BIN / "airflow"), *command], {**self.env, **env}, self.logs / f"{name}.log")
        self._extra.append(process)
        return process

    def _healthy(self) -> bool:
        if any(process.poll() is not None for process in self._extra):
            raise RuntimeError("a part of Airflow exited")
        return super()._healthy()

    def _workers_ready(self) -> bool:
        return all(" ready." in self.part_log(f"worker-{n}") for n in range(1, self._workers + 1))

    def start_triggerer(self, timeout: float = 120) -> None:
        """Start a triggerer and wait for its job: Airflow's job table records no process id, so
        triggerers start one at a time to know which job each one runs (``triggerer_jobs``)."""
        known = set(self.triggerer_jobs)
        port = {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
        process = self._start(f"triggerer-{len(known) + 1}", ["triggerer"], **port)

        def new_job() -> int | None:
            if process.poll() is not None:
                raise RuntimeError("the triggerer exited")
            return next(iter(set(self.live_triggerer_jobs()) - known), None) if self._answers() else None

        self.triggerer_jobs[wait_until("the triggerer's job", new_job, timeout)] = process

    def kill_triggerer(self, job_id: int) -> None:
        """SIGKILL the triggerer running this job and its trigger runner, as a lost node would go."""
        kill_family(psutil.Process(self.triggerer_jobs.pop(job_id).pid))

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A Celery worker named ``worker-N@localhost``."""
        self._workers += 1
        name = f"worker-{self._workers}"
        port = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        return self._start(name, ["celery", "worker", "--celery-hostname", f"{name}@localhost"], **port)

    def celery_workers(self) -> list[psutil.Process]:
        """Celery workers' main processes (each runs its tasks in pool processes below it)."""
        return [
            p
            for p in self.processes("celery worker")
            if "celery worker" not in " ".join(p.parent().cmdline())
        ]

    def live_triggerer_jobs(self) -> list[int]:
        """Ids of the triggerer jobs Airflow deems alive (heartbeat within its health threshold)."""
        answer = self._json("GET", "/jobs", params={"job_type": "TriggererJob", "is_alive": True})
        return [int(job["id"]) for job in answer["jobs"]]

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).is_success
        except httpx.HTTPError:
            return False

    def part_log(self, name: str) -> str:
        log = self.logs / f"{name}.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def log_tail(self, lines: int = 15) -> str:
        tails = []
        for log in sorted(self.logs.glob("*.log")):
            text = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            tails.append(f"--- {log.name}\n{text}")
        return "\n".join(tails)

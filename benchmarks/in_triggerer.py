"""Row (f) of ``make bench``: the Airflow around our triggers, as a deployment has it.

A private ``AIRFLOW_HOME`` on SQLite holds a tiny DAG (serialized into the database as the DAG
processor would), one DAG run, and the APIXO connection, saved in the database: so each trigger's
connection lookup goes over the trigger runner's channel to its supervisor, as in production. A
real ``airflow triggerer`` (supervisor and trigger-runner processes) runs the triggers. The harness
plays the scheduler's and workers' part in the database: for each APIXO task it defers a task
instance on a ``Trigger`` row made with Airflow's ORM (kwargs encrypted as Airflow encrypts them), and
it reads back the task instances the triggerer resumed (state ``scheduled``, the event in
``next_kwargs``, the moment in ``scheduled_dttm``).

Only this process and the triggerer import Airflow's ORM; ``polling_at_scale.py`` drives it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    import asyncio

    from airflow.triggers.base import BaseTrigger

DAG_ID, RUN_ID, TASK_ID, PROBE_TASK_ID = "bench_triggerer", "bench", "generate", "loop_lag_probe"
DAG_FILE = '''"""Row (f)'s DAG: a mapped generation whose task instances the harness defers; the probe."""
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from airflow_provider_nanobanana.operators.apixo import ApixoGenerateOperator

with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    ApixoGenerateOperator.partial(task_id={task_id!r}, model={model!r}, apixo_conn_id={conn_id!r}).expand(
        input=[{{"mode": "text-to-image", "prompt": "a lighthouse at dusk"}}]
    )
    EmptyOperator(task_id={probe_task_id!r})
'''
BLOCKED = re.compile(r"^(\S+) .*(Triggerer's async thread was blocked for ([\d.]+) seconds)")
RESUME_POLL = 0.2  # how often the harness looks for resumed task instances and defers new ones


def configure_environment(home: Path) -> None:
    """Before Airflow is imported: the private home, a Fernet key of its own, no example DAGs, no
    connection from the environment (so the triggerer reads it from the database), and unbuffered
    output (so the triggerer's log holds every line when it is read)."""
    from cryptography.fernet import Fernet

    for name in [name for name in os.environ if name.startswith("AIRFLOW_CONN_")]:
        del os.environ[name]
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode(),
        PYTHONUNBUFFERED="1",
    )


def airflow_command(*args: str, log: Path) -> None:
    """An ``airflow`` CLI command of the venv, its output kept in ``log``."""
    with log.open("a") as out:
        command = [str(Path(sys.executable).with_name("airflow")), *args]
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True)


def prepare_home(home: Path, connection: dict[str, Any], model: str) -> None:
    """The database as a deployment has it once the DAG is parsed and a run started: migrated, the
    DAG serialized by ``airflow dags reserialize``, one running DAG run, the connection saved."""
    (home / "dags").mkdir(parents=True, exist_ok=True)
    names = {"dag_id": DAG_ID, "task_id": TASK_ID, "probe_task_id": PROBE_TASK_ID}
    source = DAG_FILE.format(**names, model=model, conn_id=connection["conn_id"])
    (home / "dags" / f"{DAG_ID}.py").write_text(source)
    airflow_command("db", "migrate", log=home / "setup.log")
    airflow_command("dags", "reserialize", log=home / "setup.log")
    start_run_and_save_connection(connection)


def start_run_and_save_connection(connection: dict[str, Any]) -> None:
    """One running DAG run, without the task instances Airflow creates for it (the harness makes its
    own, one per APIXO task), and the connection, its key encrypted by Airflow."""
    from airflow.models.connection import Connection
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import delete

    now = datetime.now(UTC)
    with create_session() as session:
        dag = SerializedDagModel.get_dag(DAG_ID, session=session)
        assert dag is not None, f"{DAG_ID} was not serialized"
        dag.create_dagrun(
            run_id=RUN_ID,
            run_after=now,
            start_date=now,
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
        session.execute(delete(TaskInstance).where(TaskInstance.run_id == RUN_ID))
        session.add(Connection(**{**connection, "extra": json.dumps(connection["extra"])}))


class Triggerer:
    """A real ``airflow triggerer`` in a process group of its own: its supervisor (the CLI process)
    and trigger runner (its child), their CPU and memory, and what its log says of the loop."""

    def __init__(self, home: Path, capacity: int) -> None:
        self.log_path = home / "triggerer.log"
        self.log_dir = home / "logs"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # for the lag probe
        command = [str(Path(sys.executable).with_name("airflow")), "triggerer", "--skip-serve-logs"]
        command += ["--capacity", str(capacity)]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.supervisor = psutil.Process(self.process.pid)

    def wait_until_running(self, timeout: float = 120) -> None:
        """Until its runner process is up and its job has heartbeaten: it then picks triggers up."""
        from airflow.jobs.job import Job
        from airflow.utils.session import create_session
        from sqlalchemy import select

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"airflow triggerer exited: see {self.log_path}")
            with create_session() as session:
                beat = session.scalar(select(Job.latest_heartbeat).where(Job.job_type == "TriggererJob"))
            if beat is not None and self.supervisor.children():
                return
            time.sleep(0.5)
        raise RuntimeError(f"airflow triggerer did not start: see {self.log_path}")

    def processes(self) -> dict[str, psutil.Process]:
        return {"supervisor": self.supervisor, "runner": self.supervisor.children()[0]}

    def cpu_seconds(self) -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in self.processes().items()}

    def cpu_waits(self) -> dict[str, float]:
        """How long each process's main thread (the runner's event loop) has waited, ready to run, for
        a core (the kernel's run-queue time, ``/proc/PID/schedstat``): the share of loop lag that
        is the machine's, not the loop's."""
        return {
            name: int(Path(f"/proc/{p.pid}/schedstat").read_text().split()[1]) / 1e9
            for name, p in self.processes().items()
        }

    def rss(self) -> dict[str, int]:
        return {name: p.memory_info().rss for name, p in self.processes().items()}

    def blocked_warnings(self, start: float, end: float) -> list[tuple[float, str]]:
        """Airflow's own loop-health check: each "async thread was blocked" line logged in the window,
        as (seconds, the line's message)."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if (match := BLOCKED.match(line)) and start <= _unix(match[1]) < end:
                found.append((float(match[3]), match[2]))
        return found

    def fired_at(self, map_index: int) -> float | None:
        """When the trigger of one task instance yielded its event in the runner (its trigger log's
        "Trigger fired event" line): row (a)'s moment of detection, before Airflow hands it on."""
        folder = self.log_dir / f"dag_id={DAG_ID}" / f"run_id={RUN_ID}" / f"task_id={TASK_ID}"
        for path in (folder / f"map_index={map_index}").glob("*.trigger.*.log"):
            for line in path.read_text(errors="replace").splitlines():
                record = json.loads(line)
                if record.get("event") == "Trigger fired event":
                    return _unix(record["timestamp"])
        return None

    def stop(self) -> None:
        """SIGTERM to its group (it cancels its triggers and exits), SIGKILL if that takes long."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def _unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


@dataclass(frozen=True)
class Resumed:
    """A task instance the triggerer resumed: when (``scheduled_dttm``) and with which event payload
    (None when the trigger failed instead: Airflow then schedules the task to fail)."""

    map_index: int
    at: float
    event: dict[str, Any] | None

    @property
    def task(self) -> dict[str, Any]:
        """The APIXO task's status as the event carries it (empty for a failed trigger)."""
        return (self.event or {}).get("task") or {}


class Deferrals:
    """The scheduler's and workers' side of the database for the harness, in a thread of its own.

    :meth:`defer` makes a task instance deferred on a new trigger, as a worker's ``defer()`` does;
    it returns once the triggerer has resumed it. Every ``RESUME_POLL`` seconds the thread saves the
    new deferrals in one transaction, and marks the resumed task instances ``success`` (as the worker
    running ``execute_complete`` would) so that they are read once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.new: list[tuple[str, int, BaseTrigger, float, asyncio.Future[Resumed]]] = []
        self.waiting: dict[tuple[str, int], asyncio.Future[Resumed]] = {}
        self.next_map_index = 0
        threading.Thread(target=self._run, daemon=True).start()

    async def defer(self, trigger: BaseTrigger, until: float, task_id: str = TASK_ID) -> Resumed:
        """Defer a new task instance of ``task_id`` on ``trigger``, timing out at Unix time ``until``."""
        resumed: asyncio.Future[Resumed] = self.loop.create_future()
        with self.lock:
            map_index = self.next_map_index if task_id == TASK_ID else -1
            self.next_map_index += task_id == TASK_ID
            self.new.append((task_id, map_index, trigger, until, resumed))
        return await resumed

    def _run(self) -> None:
        from airflow.models.serialized_dag import SerializedDagModel
        from airflow.utils.session import create_session

        with create_session() as session:
            model = SerializedDagModel.get(DAG_ID, session=session)
            assert model is not None
            dag, version_id = model.dag, model.dag_version_id
        while True:
            time.sleep(RESUME_POLL)
            with self.lock:
                new, self.new = self.new, []
            with create_session() as session:
                self._save(session, dag, version_id, new)
                resumed = self._take_resumed(session)
            for task_id, item in resumed:
                self.loop.call_soon_threadsafe(self.waiting.pop((task_id, item.map_index)).set_result, item)

    def _save(self, session: Any, dag: Any, version_id: Any, new: list[Any]) -> None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.trigger import Trigger
        from airflow.utils.state import TaskInstanceState

        for task_id, map_index, trigger, until, resumed in new:
            state = TaskInstanceState.DEFERRED
            ti = TaskInstance(dag.get_task(task_id), version_id, RUN_ID, state, map_index)
            ti.try_number = 1
            ti.next_method = "execute_complete"
            ti.trigger_timeout = datetime.fromtimestamp(until, UTC)
            ti.trigger = Trigger.from_object(trigger)
            session.add(ti)
            self.waiting[(task_id, map_index)] = resumed

    def _take_resumed(self, session: Any) -> list[tuple[str, Resumed]]:
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select, tuple_, update

        columns = (TI.task_id, TI.map_index, TI.scheduled_dttm, TI.next_method, TI.next_kwargs)
        rows = session.execute(
            select(*columns).where(TI.run_id == RUN_ID, TI.state == TaskInstanceState.SCHEDULED)
        ).all()
        if not rows:
            return []
        keys = [(task_id, map_index) for task_id, map_index, *_ in rows]
        session.execute(
            update(TI)
            .where(TI.run_id == RUN_ID, tuple_(TI.task_id, TI.map_index).in_(keys))
            .values(state=TaskInstanceState.SUCCESS)
        )
        return [
            (task_id, _resumed(map_index, at, method, kwargs))
            for task_id, map_index, at, method, kwargs in rows
        ]


def _resumed(map_index: int, at: datetime, next_method: str, next_kwargs: Any) -> Resumed:
    """A failed trigger resumes its task instance into ``__fail__``, an error in place of the event."""
    from airflow.sdk.serde import deserialize

    event = None if next_method == "__fail__" else deserialize(next_kwargs)["event"]
    return Resumed(map_index, at.timestamp(), event)

"""Helpers shared by the test modules: one place, so in-process and cross-process tests look alike."""

from __future__ import annotations

import contextlib
import copy
import glob
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import pytest
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from PIL import Image

from airflow_provider_nanobanana.compat import AIRFLOW_V_3_1_PLUS
from airflow_provider_nanobanana.hooks.apixo import ApixoHook, RetryPolicy
from airflow_provider_nanobanana.reattach import RECORD_KEY

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from airflow.sdk import DAG
    from tenacity import RetryCallState

ROOT = Path(__file__).resolve().parents[1]
"""The checkout: README, example DAGs, the tests' own DAGs."""
AIRFLOW_HOME = Path(os.environ["AIRFLOW_HOME"])
"""The private Airflow home: ``tests/conftest.py`` makes it and points Airflow at it before Airflow is
imported, and before this module is."""
# A key that occurs nowhere else, so a leak check can search every output for it.
TEST_API_KEY = "sk-apixo-test-7c1d2e9f4b8a"
# A key the emulator refuses; like the test key it occurs nowhere else, so leak checks can search for it.
WRONG_KEY = "sk-apixo-wrong-0f9e8d7c6b5a"


RESCHEDULES_IN_DAG_TEST = pytest.mark.skipif(
    not AIRFLOW_V_3_1_PLUS,
    reason="Airflow 3.0's dag.test() gives a rescheduled sensor its first poke's time as text (its "
    "in-process API client skips validation): a TypeError in Airflow's sensor; real workers validate it",
)
"""For a rescheduled sensor under ``dag.test()``."""


def without_airflow_mask_requests(output: str) -> str:
    """``output`` less Airflow 3.0's own debug lines that carry each secret it is asked to mask.

    Under ``dag.test()`` and ``airflow dags test`` Airflow 3.0 prints every message of the task to
    its supervisor at debug level, the connection's password in ``MaskSecret`` among them (3.1 does
    not). Nothing of the provider's is in them; every other line is still searched.
    """
    if AIRFLOW_V_3_1_PLUS:
        return output
    return "\n".join(line for line in output.splitlines() if "MaskSecret(value=" not in line)


def apixo_connection(base_url: str, api_key: str = TEST_API_KEY, **extra: object) -> str:
    """An ``AIRFLOW_CONN_*`` value for the emulator."""
    conn: dict[str, object] = {"conn_type": "apixo", "host": base_url, "password": api_key}
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A real redis-server on a free loopback port, without persistence; its URL. Skips without one."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (make test installs it when run as root)")
    port = free_port()
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass(frozen=True)
class S3Store:
    """A fresh bucket on the loopback S3 server, and the Airflow connection (``aws``) that reaches it."""

    endpoint: str
    conn_id: str
    bucket: str

    def uri(self, key: str = "") -> str:
        """``s3://conn_id@bucket/key``: as Airflow writes object-store URIs, and ``stored_paths`` holds."""
        return f"s3://{self.conn_id}@{self.bucket}/{key}"

    def unsigned_url(self, key: str) -> str:
        """The object's plain URL: refused without a signature, as a private bucket's are."""
        return f"{self.endpoint}/{self.bucket}/{key}"

    def put(self, key: str, data: bytes) -> None:
        self._client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        body: bytes = self._client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def _client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.conn_id).get_conn()


def s3_connection(endpoint: str) -> str:
    """An ``aws`` connection to the loopback S3 server, as a user saves one (JSON of AIRFLOW_CONN_*)."""
    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 API server in a thread on a free loopback port; its endpoint URL."""
    from moto.server import ThreadedMotoServer

    # Its access log quotes every URL it serves, signatures included: the leak checks look for ours.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _postgres_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or where Debian's ``postgresql`` puts it."""
    by_version = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: int(Path(path).parts[4])
    )
    return shutil.which(name) or (by_version[-1] if by_version else None)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster in a temp folder on a free loopback port; its SQLAlchemy URL.

    Trust auth on loopback and no fsync: a test database, not a durable one. PostgreSQL refuses to
    run as root, so as root the cluster belongs to Debian's ``postgres`` user. Skips without one.
    """
    initdb, postgres, pg_ctl = (_postgres_bin(name) for name in ("initdb", "postgres", "pg_ctl"))
    if initdb is None or postgres is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql when run as root)")
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nanobanana-postgres-") as folder:
        data = Path(folder) / "data"
        data.mkdir()
        if as_owner:
            shutil.chown(folder, "postgres")
            shutil.chown(data, "postgres")
        init = [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]
        subprocess.run([*as_owner, *init], check=True, capture_output=True, timeout=120)
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": folder,
            "max_connections": "300",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
        with (Path(folder) / "postgres.log").open("ab") as log:
            args = [*as_owner, postgres, "-D", str(data), "-p", str(port), *options]
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, process, "postgres")
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        finally:
            stop = [*as_owner, pg_ctl, "stop", "-D", str(data), "--mode=fast", "--wait"]
            subprocess.run(stop, capture_output=True, timeout=60)
            process.wait(timeout=30)


# Quick retries for tests that do not test the production settings.
FAST = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05)


@dataclass(frozen=True)
class RecordingPolicy(RetryPolicy):
    """A RetryPolicy that remembers every wait it chose, so tests can check backoff and Retry-After."""

    waits: list[float] = field(default_factory=list, compare=False)

    def wait(self, state: RetryCallState) -> float:
        value = super().wait(state)
        self.waits.append(value)
        return value


MODEL = "nano-banana"
T2I = {"mode": "text-to-image", "prompt": "a watercolor fox", "aspect_ratio": "16:9", "output_format": "png"}
"""The ``input`` of a text-to-image task, as the hook sends it."""
FAKE_BASE = "https://apixo.test/api/v1"
"""A base URL nothing answers: for respx (see ``fake_api``)."""
STATUS_PATH = "/api/v1/statusTask"


def envelope(data: Any, code: int = 200, message: str = "success") -> dict[str, Any]:
    """APIXO's answer around ``data``."""
    return {"code": code, "message": message, "data": data}


def status_body(state_: str = "processing", **extra: Any) -> dict[str, Any]:
    """A status answer for ``task_1``; ``extra`` adds or replaces fields of its ``data``."""
    return envelope({"taskId": "task_1", "state": state_, "createTime": 1700000000000, **extra})


# An error-level line as Airflow writes it: on the console (`[error    ]`), in task logs (JSON).
_ERROR_LEVEL = re.compile(r'\[(error|critical) *\]|"level": ?"(error|critical)"')


def error_lines(log: str) -> list[str]:
    """The error-level lines of an Airflow log: a successful run should have none."""
    return [line for line in log.splitlines() if _ERROR_LEVEL.search(line)]


def submit(prompt: str = "a lighthouse", model: str = "nano-banana") -> str:
    """Submit a text-to-image task on ``apixo_default`` (as an upstream task would); its id."""
    hook = ApixoHook()
    try:
        return hook.submit_task(model, {"mode": "text-to-image", "prompt": prompt})
    finally:
        hook.close()


def run(dag: DAG, **conf: Any) -> tuple[str, dict[tuple[str, str], Any]]:
    """Run the DAG once with ``dag.test()``; return the run's state and its XComs by (task_id, key).

    ``dag.test(run_conf=...)`` writes the conf into the tasks' params: put them back afterwards.
    """
    saved = {task_id: copy.deepcopy(task.params) for task_id, task in dag.task_dict.items()}
    if not AIRFLOW_V_3_1_PLUS:
        _write_to_db(dag)
    try:
        dag_run = dag.test(run_conf=conf or None)
    finally:
        for task_id, params in saved.items():
            dag.task_dict[task_id].params = params
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        xcoms = {(row.task_id, row.key): row.value for row in rows}
    return dag_run.state, xcoms


def _write_to_db(dag: DAG) -> None:
    """Save the DAG as the DAG processor would: Airflow 3.0's ``dag.test()`` does not, so the assets
    its tasks update are not active and the tasks fail (3.1 saves the DAG first)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dag import DAG as SchedulerDAG
    from airflow.serialization.serialized_objects import SerializedDAG

    bundles = DagBundlesManager()
    bundles.sync_bundles_to_db()
    (bundle,) = [each for each in bundles.get_all_dag_bundles() if dag.fileloc.startswith(str(each.path))]
    scheduler_dag = SerializedDAG.deserialize_dag(SerializedDAG.serialize_dag(dag))
    SchedulerDAG.bulk_write_to_db(bundle.name, None, [scheduler_dag])  # type: ignore[arg-type,unused-ignore]


class FakeTaskInstance:
    """The task instance as operators and sensors use it: identity, XCom, the try number and
    ``max_tries`` (which Airflow raises when a task is cleared, never on a retry)."""

    def __init__(self, try_number: int = 1, map_index: int = -1, max_tries: int = 0) -> None:
        self.id = uuid.uuid4()
        self.dag_id = "covers"
        self.run_id = "manual__2026-11-26T00:00:00+00:00"
        self.task_id = "generate"
        self.map_index = map_index
        self.try_number = try_number
        self.max_tries = max_tries
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int | None = None) -> Any:
        assert map_indexes == self.map_index, "pull this instance's own XCom, not every map index's"
        return self.xcom.get(key)


class FakeStore:
    """``task_state_store`` of one task instance: it outlives the tries and pokes that use it."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)
        self.retention: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = value
        self.retention[key] = retention

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def delivered(self) -> bool:
        """Whether the submission record is kept as delivered (a try returned its outcome)."""
        record = self.values.get(RECORD_KEY)
        return record is not None and record.get("delivered_max_tries") is not None


class ReceivedPost(NamedTuple):
    """One POST a :class:`LocalReceiver` got."""

    at: float
    """When it came, on the monotonic clock."""
    path: str
    """Its path and query."""
    body: Any
    """Its JSON body."""


class LocalReceiver:
    """A loopback HTTP server that records every POST with its JSON body: a CMS, a webhook receiver,
    a flaky consumer.

    :param script: one ``(status, delay_seconds)`` per POST, in order: its answer, held that long.
    :param status: the answer to every POST after the script.
    :param path: the path (and query) :attr:`url` ends with.
    """

    def __init__(self, *script: tuple[int, float], status: int = 200, path: str = "") -> None:
        self.received: list[ReceivedPost] = []
        self._path = path
        answers, received = list(script), self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append(ReceivedPost(time.monotonic(), self.path, body))
                answer, delay = answers.pop(0) if answers else (status, 0.0)
                time.sleep(delay)
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # Threads: a held answer must not hold up the next POST (a retry, a duplicate).
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self._path}"

    def __enter__(self) -> LocalReceiver:
        serve = {"poll_interval": 0.05}  # a quick shutdown keeps the tests fast
        threading.Thread(target=self._server.serve_forever, kwargs=serve, daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def dags_test(dag_id: str, conf: dict[str, Any], environment: dict[str, str]) -> str:
    """``airflow dags test`` in a process of its own, on the suite's Airflow home with ``environment``
    added (``[metrics]``, ``[openlineage]``: what Airflow reads once, at start); its output."""
    airflow = Path(sys.executable).parent / "airflow"
    command = [str(airflow), "dags", "test", dag_id, "--conf", json.dumps(conf)]
    done = subprocess.run(
        command, env={**os.environ, **environment}, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    return output


class StatsdReceiver:
    """A StatsD server: a UDP socket on a free loopback port that keeps every metric line it gets.

    Airflow sends ``<prefix>.<name>:<value>|<type>`` lines (``c`` count, ``ms`` timer, ``g`` gauge).
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self._lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def environment(self, prefix: str = "airflow") -> dict[str, str]:
        """What points Airflow's ``[metrics]`` at this receiver."""
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": prefix,
        }

    def values(self, name: str, kind: str) -> list[float]:
        """The values received for the metric ``name`` (its full name) of this kind, in order."""
        found = []
        for line in list(self._lines):
            for metric in line.splitlines():
                stat, _, rest = metric.partition(":")
                value, _, rest = rest.partition("|")
                if stat == name and rest.split("|")[0] == kind:
                    found.append(float(value))
        return found

    def count(self, name: str) -> float:
        """The sum of the counter ``name``."""
        return sum(self.values(name, "c"))

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                self._lines.append(self._socket.recv(65535).decode())
            except TimeoutError:
                continue

    def __enter__(self) -> StatsdReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


def ended(admin: EmulatorAdmin, task_id: str) -> str:
    """Wait until the emulator's task has ended; its final state."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = next(task["state"] for task in admin.tasks() if task["id"] == task_id)
        if state in ("success", "failed"):
            return str(state)
        time.sleep(0.1)
    raise AssertionError(f"emulator task {task_id} did not end")


class EmulatorAdmin:
    """The emulator's admin endpoints (``/_emulator/*``) over HTTP.

    Tests steer and inspect the emulator through this client whether the code under test runs in
    the test process or in Airflow's own processes under ``airflow standalone``.
    """

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")
        self._client = httpx.Client(base_url=self.root_url + "/_emulator", timeout=10, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str) -> Any:
        response = self._client.get(path)
        response.raise_for_status()
        return response.json()

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._client.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._send("POST", "/reset")

    def configure(self, **settings: float | list[float] | dict[str, float]) -> dict[str, Any]:
        """Change settings such as ``generation_seconds`` or ``requests_per_minute``."""
        return dict(self._send("PATCH", "/settings", settings))

    def fail_next_tasks(self, fail_code: str, count: int = 1, fail_msg: str | None = None) -> None:
        rule: dict[str, Any] = {"fail_code": fail_code, "count": count}
        if fail_msg is not None:
            rule["fail_msg"] = fail_msg
        self._send("POST", "/faults", {"fail_next_tasks": rule})

    def fault_callbacks(
        self, drop: int = 0, delay_seconds: float = 0, duplicate: int = 0, forge: int = 0
    ) -> None:
        """Replace the callback faults: lose the next ``drop`` deliveries, hold every delivery
        ``delay_seconds`` before its first POST (0 ends that), POST the next ``duplicate`` twice,
        precede the next ``forge`` with a copy carrying a wrong ``token``."""
        faults = {"drop": drop, "delay_seconds": delay_seconds, "duplicate": duplicate, "forge": forge}
        self._send("POST", "/faults", {"callbacks": faults})

    def inject_http_errors(
        self,
        status: int,
        times: int,
        endpoint: str = "any",
        retry_after: float | None = None,
        retry_after_format: str = "seconds",
    ) -> None:
        """The next ``times`` requests to ``endpoint`` answer ``status``; ``retry_after_format`` is
        ``seconds`` or ``http-date``."""
        rule = {
            "status": status,
            "times": times,
            "endpoint": endpoint,
            "retry_after": retry_after,
            "retry_after_format": retry_after_format,
        }
        self._send("POST", "/faults", {"http_errors": rule})

    def tasks(self) -> list[dict[str, Any]]:
        return list(self._get("/tasks")["tasks"])

    def requests(self) -> list[dict[str, str]]:
        """Every API request received, in order: ``{"method", "path"}``."""
        return [{"method": r["method"], "path": r["path"]} for r in self._get("/requests")["requests"]]

    def request_times(self) -> list[float]:
        """When each API request was received (Unix times, in order)."""
        return [float(r["at"]) for r in self._get("/requests")["requests"]]

    def rate_limited_times(self) -> list[float]:
        """When API requests were answered 429 because of the per-minute limit (Unix times)."""
        return [float(answer["at"]) for answer in self._get("/rate-limited")["rate_limited"]]

    def request_count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """How many API requests matched the method and path prefix (e.g. ``/api/v1/statusTask``)."""
        return sum(
            1
            for request in self.requests()
            if (method is None or request["method"] == method.upper())
            and (path_prefix is None or request["path"].startswith(path_prefix))
        )

    def rate_limited(self) -> int:
        """API requests answered 429 because of the per-minute limit."""
        return int(self._get("/stats")["rate_limited"])

    def submissions(self) -> int:
        """POSTs that created a task: what was paid for."""
        return int(self._get("/stats")["tasks"])

    def downloads(self) -> tuple[int, int]:
        """Result downloads served, and how many of them carried an Authorization header or cookie."""
        stats = self._get("/stats")
        return int(stats["downloads"]), int(stats["downloads_with_credentials"])

    def callbacks(self) -> list[dict[str, Any]]:
        return list(self._get("/callbacks")["callbacks"])

    def reference_fetches(self, wait_for: int = 0, timeout: float = 10.0) -> list[str]:
        """The reference image URLs the emulator fetched (as APIXO would), once ``wait_for`` have been:
        it fetches right after answering the submission."""
        deadline = time.monotonic() + timeout
        while len(urls := list(self._get("/reference-fetches")["urls"])) < wait_for:
            assert time.monotonic() < deadline, f"{len(urls)} of {wait_for} references fetched"
            time.sleep(0.05)
        return urls


# --- the emulator's API over plain HTTP (tests/emulator/) -------------------------------------------

GENERATION = 0.3
"""Seconds the emulator of tests/emulator/ takes per task, unless a test says otherwise."""
PENDING = 0.1
"""Seconds its tasks stay pending."""
RETRY_DELAYS = (0.05, 0.1, 0.2)
"""Its callback retry delays: APIXO's shape (3 growing waits), much shorter."""


def t2i_body(prompt: str = "a watercolor fox", **extra: Any) -> dict[str, Any]:
    """A valid text-to-image body; ``extra`` entries go into ``input``."""
    return {"request_type": "async", "input": {"mode": "text-to-image", "prompt": prompt, **extra}}


def post_task(api: httpx.Client, body: dict[str, Any], model: str = MODEL) -> str:
    """Submit ``body``, which must be accepted; the task id."""
    answer = api.post(f"/generateTask/{model}", json=body)
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["data"]["taskId"]
    return task_id


def get_status(api: httpx.Client, task_id: str, model: str = MODEL) -> httpx.Response:
    return api.get(f"/statusTask/{model}", params={"taskId": task_id})


def wait_terminal(
    api: httpx.Client, task_id: str, timeout: float = 3.0, model: str = MODEL
) -> dict[str, Any]:
    """Read the status until the task has ended; its last ``data``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data: dict[str, Any] = get_status(api, task_id, model).json()["data"]
        if data["state"] in ("success", "failed"):
            return data
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} did not finish within {timeout} s")


def result_url(data: dict[str, Any]) -> str:
    """The one result URL of a successful status ``data``."""
    assert isinstance(data["resultJson"], str)
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert len(urls) == 1
    url: str = urls[0]
    return url


def decode(data: bytes, image_format: str) -> Image.Image:
    """Decode with Pillow, checking the format really is the one asked for."""
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == image_format and image.mode == "RGB"
    return image


INK_LEVEL = 200
"""Text is white; the panel behind it darkens the background to at most 128, so only text is brighter."""

PROMPT_AREA = (0.1, 0.1, 0.9, 0.6)
"""Where the prompt sits, as fractions of the sides."""


def ink(image: Image.Image, area: tuple[float, float, float, float]) -> bytes:
    """A mask of the text pixels in an area: 255 where a pixel is near white, else 0."""
    width, height = image.size
    box = (round(area[0] * width), round(area[1] * height), round(area[2] * width), round(area[3] * height))
    mask = image.crop(box).convert("L").point(lambda level: 255 if level >= INK_LEVEL else 0)
    return mask.tobytes()


def ink_count(image: Image.Image, area: tuple[float, float, float, float]) -> int:
    return ink(image, area).count(255)

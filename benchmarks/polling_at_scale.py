"""Polling at scale: a thousand APIXO tasks in flight on one key, six ways, side by side.

``make bench`` runs it; ``benchmarks/README.md`` says what it measures and what it found. Each way
runs in real time against a fresh emulator process that enforces APIXO's 10,000 requests per rolling
minute (submissions counted) and takes 10 to 20 s per task. Every finished task is replaced by a new
submission, so the number in flight stays put.

- (a) this provider's trigger as the triggerer runs it: many ``ApixoTaskTrigger.run()`` in one
  event loop, the connection's ``requests_per_minute`` at 6,000 (the workers' submissions take the
  rest of the key's 10,000);
- (b) the naive way: a new ``httpx.AsyncClient`` per poll, fixed cadence (first poll 5 s, then 3 s);
- (c) one keep-alive client, the same fixed cadence, no pacing;
- (d) (a) split over two processes whose budget of 9,600 a minute, submissions included, is shared
  through Redis;
- (e) callback mode: no polling; APIXO's webhook reaches a loopback receiver standing in for the
  plugin's route, and the woken wait makes the one verifying status read ``execute_complete`` makes;
- (f) (a)'s triggers in a real ``airflow triggerer`` (supervisor and trigger runner), each on a task
  instance deferred in Airflow's database (``in_triggerer.py``), the connection saved there;
- (g) (a) while another client of the same key, unpaced, spends 3,000 requests a minute: the
  provider does not own the key's whole budget and learns its share from APIXO's 429s.

Then 100 tasks in flight, where the budget does not bind: (a) beside (c) and (e).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import httpx
import psutil
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from concurrent.futures import Future

    from in_triggerer import Resumed, Triggerer
    from starlette.requests import Request

    from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger

API_KEY = "sk-apixo-bench-31f7"
MODEL = "nano-banana"
CONN_ID = "apixo_bench"
BODY: dict[str, Any] = {
    "request_type": "async",
    "provider": "auto",
    "input": {"mode": "text-to-image", "prompt": "a lighthouse at dusk", "aspect_ratio": "1:1"},
}
INITIAL_DELAY, POLL_INTERVAL = 5.0, 3.0
LAG_TICK = 0.1
CALLBACK_NET = 60.0  # in callback mode the trigger still polls, this rarely (DEFAULT_CALLBACK_POLL_INTERVAL)
WORKERS = 8


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    mode: str  # provider | naive | keepalive | callback
    tasks: int
    processes: int = 1
    requests_per_minute: int | None = None
    shared_budget: bool = False
    noise_per_minute: int = 0
    """(g): requests a minute another, unpaced client of the same key sends beside the load."""


# --- the workers: submissions, in a process of their own -----------------------------------------


async def serve_submissions(args: argparse.Namespace, protocol: TextIO) -> None:
    """Submit a task for every line on stdin; answer ``task_id submitted_at`` lines, in any order.

    They are the workers' requests: they come out of the key's budget at APIXO (and, with a shared
    budget, through the hook and Redis, as (d)'s workers do), not out of the triggerer's loop.
    """
    from airflow_provider_nanobanana.api import build_task_body
    from airflow_provider_nanobanana.hooks.apixo import ApixoHook

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    client = httpx.AsyncClient(
        base_url=args.base_url, headers=headers, timeout=60.0, limits=httpx.Limits(max_connections=WORKERS)
    )
    body = build_task_body(BODY["input"], callback_url=args.callback_url)  # callback mode for (e)
    hook, slots, running = ApixoHook(CONN_ID), asyncio.Semaphore(WORKERS), set()
    print("ready", file=protocol, flush=True)

    async def submit() -> None:
        async with slots:
            submitted = time.time()
            if args.shared_budget:
                task_id = await hook.asubmit_task(MODEL, BODY["input"], callback_url=args.callback_url)
            else:
                while (response := await client.post(f"/generateTask/{MODEL}", json=body)).status_code != 200:
                    await asyncio.sleep(1.0)
                task_id = response.json()["data"]["taskId"]
        protocol.write(f"{task_id} {submitted}\n")
        protocol.flush()

    while await reader.readline():
        task = asyncio.create_task(submit())
        running.add(task)
        task.add_done_callback(running.discard)


class Workers:
    """The load process's side of the workers: ask for a task, get a task id and its submission time."""

    def __init__(self, args: argparse.Namespace) -> None:
        command = [sys.executable, __file__, "--workers", "--base-url", args.base_url]
        if args.shared_budget:
            command.append("--shared-budget")
        if args.callback_url:
            command += ["--callback-url", args.callback_url]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
        self.process = subprocess.Popen(command, **pipes, text=True)  # type: ignore[call-overload]
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the workers process did not start")
        self.waiting: deque[asyncio.Future[tuple[str, float]]] = deque()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        threading.Thread(target=self._read, args=(loop,), daemon=True).start()

    async def submit(self) -> tuple[str, float]:
        answer: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
        self.waiting.append(answer)
        self.process.stdin.write("1\n")
        self.process.stdin.flush()
        return await answer

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        for line in self.process.stdout:
            task_id, submitted = line.split()
            loop.call_soon_threadsafe(self.waiting.popleft().set_result, (task_id, float(submitted)))


# --- one load process: the waits, as one triggerer (or a naive poller) runs them ------------------


@dataclass
class Window:
    """What one load process saw between the common window start and end."""

    start: float
    end: float
    delays: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    failed: int = 0
    """Waits that ended without the task's success (a timeout, an error), window or not."""

    def inside(self, at: float) -> bool:
        return self.start <= at < self.end

    def finished(self, task: dict[str, Any], at: float | None = None) -> None:
        """A wait ended with ``task`` (its status), noticed now or, for (f), at Unix time ``at``."""
        noticed = time.time() if at is None else at
        if self.inside(noticed) and task.get("complete_time"):
            self.delays.append(noticed - task["complete_time"] / 1000)


def report_at_window_end(window: Window, protocol: TextIO) -> None:
    """CPU and memory at window start and end, then the report, from a thread: a starved loop can
    neither delay the samples nor the report. The process ends here."""
    process = psutil.Process()
    baseline_rss = process.memory_info().rss
    cpu = []
    for at in (window.start, window.end):
        time.sleep(max(0.0, at - time.time()))
        times = process.cpu_times()
        cpu.append(times.user + times.system)
    report = {
        "delays": list(window.delays),
        "lags": list(window.lags),
        "cpu_seconds": cpu[1] - cpu[0],
        "rss_growth": process.memory_info().rss - baseline_rss,
        "failed": window.failed,
    }
    print(json.dumps(report), file=protocol, flush=True)
    os._exit(0)  # a thousand open waits need no orderly teardown


async def poll_fixed(client_for: Any, task_id: str, window: Window) -> None:
    """(b) and (c): sleep the cadence, read, repeat; a 429 just waits for the next turn."""
    await asyncio.sleep(INITIAL_DELAY)
    while True:
        async with client_for() as client:
            response = await client.get(f"/statusTask/{MODEL}", params={"taskId": task_id})
        if response.status_code == 200:
            data = response.json()["data"]
            if data["state"] in ("success", "failed"):
                window.finished({"complete_time": data.get("completeTime")})
                return
        await asyncio.sleep(POLL_INTERVAL)


def provider_trigger(task_id: str, submitted: float) -> ApixoTaskTrigger:
    """The trigger a deferred ``ApixoGenerateOperator`` makes, with the operator's defaults: (a) and (f)."""
    from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger

    return ApixoTaskTrigger(
        apixo_task_id=task_id,
        end_time=submitted + 600,
        model=MODEL,
        apixo_conn_id=CONN_ID,
        poll_interval=POLL_INTERVAL,
        initial_delay=INITIAL_DELAY,
        submitted_at=submitted,
    )


async def run_load(args: argparse.Namespace, workers: Workers, protocol: TextIO) -> None:
    from airflow_provider_nanobanana.hooks.apixo import ApixoHook
    from airflow_provider_nanobanana.polling import final_outcome

    headers = {"Authorization": f"Bearer {API_KEY}"}
    options: dict[str, Any] = {"base_url": args.base_url, "headers": headers, "timeout": 60.0}
    # (c): one keep-alive client whose pool never makes a request wait (httpx's default of 100
    # connections collapses under a thousand waits: requests queue inside httpcore).
    unbounded = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    shared = httpx.AsyncClient(**options, limits=unbounded)
    workers.attach(asyncio.get_running_loop())
    window = Window(args.window_start, args.window_end)
    threading.Thread(target=report_at_window_end, args=(window, protocol), daemon=True).start()
    webhooks, hook = Webhooks(), ApixoHook(CONN_ID)  # (e): one hook, so one client and one pacer

    async def slot(start_after: float) -> None:
        await asyncio.sleep(start_after)
        while True:
            task_id, submitted = await workers.submit()
            if args.mode == "provider":
                async for event in provider_trigger(task_id, submitted).run():
                    window.failed += event.payload["status"] != "success"
                    window.finished(event.payload["task"] or {})
            elif args.mode == "callback":  # what the resumed task's execute_complete does
                await webhooks.wait(task_id)
                outcome = final_outcome(MODEL, await hook.aget_task_status(MODEL, task_id))
                window.finished(outcome.to_event()["task"] if outcome else {})
            elif args.mode == "naive":
                await poll_fixed(lambda: httpx.AsyncClient(**options), task_id, window)
            else:
                await poll_fixed(lambda: _borrowed(shared), task_id, window)

    async def watch_lag() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_TICK)
            if window.inside(time.time()):
                window.lags.append(loop.time() - before - LAG_TICK)

    waits = [asyncio.create_task(watch_lag())]
    if args.mode == "callback":
        waits.append(webhooks.serve(args.callback_url))
    waits += [asyncio.create_task(slot(i * args.ramp / args.tasks)) for i in range(args.tasks)]
    await asyncio.sleep(window.end - time.time() + 60)  # the report thread ends the process first


class Webhooks:
    """Stands in for the plugin's route on the api-server: a POST wakes the wait for the task it names."""

    def __init__(self) -> None:
        self.ended: dict[str, asyncio.Future[None]] = {}

    def of(self, task_id: str) -> asyncio.Future[None]:
        return self.ended.setdefault(task_id, asyncio.get_running_loop().create_future())

    async def receive(self, request: Request) -> Response:
        ended = self.of((await request.json())["data"]["taskId"])
        if not ended.done():
            ended.set_result(None)
        return Response(status_code=200)

    async def wait(self, task_id: str) -> None:
        """Until the webhook comes, or the trigger's rare poll would have looked anyway."""
        await asyncio.wait([self.of(task_id)], timeout=CALLBACK_NET)
        self.ended.pop(task_id)

    def serve(self, url: str) -> asyncio.Task[None]:
        app = Starlette(routes=[Route(urlsplit(url).path, self.receive, methods=["POST"])])
        port = urlsplit(url).port or 80
        config = uvicorn.Config(app, port=port, log_level="warning", access_log=False, lifespan="off")
        return asyncio.create_task(uvicorn.Server(config).serve())


class _borrowed:
    """``async with`` around a shared client that must stay open."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def __aenter__(self) -> httpx.AsyncClient:
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        return None


def set_connection(args: argparse.Namespace) -> None:
    extra: dict[str, Any] = {}
    if args.requests_per_minute:
        extra["requests_per_minute"] = args.requests_per_minute
    if args.redis_url:
        extra["rate_limit_storage"] = args.redis_url
    conn = {"conn_type": "apixo", "host": args.base_url, "password": API_KEY, "extra": extra}
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)


def speak_on_stdout_only() -> TextIO:
    """Standard output for the parent's protocol; anything else printed (logs, as a triggerer writes
    them) goes to standard error."""
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return protocol


def load_main(args: argparse.Namespace) -> None:
    if args.mode == "triggerer":
        triggerer_main(args)
        return
    set_connection(args)
    protocol = speak_on_stdout_only()
    import airflow_provider_nanobanana.triggers.nanobanana  # noqa: F401  (imports before the clock starts)

    if args.mode == "callback":
        args.callback_url = f"http://127.0.0.1:{free_port()}/cb"

    workers = Workers(args)
    print("ready", file=protocol, flush=True)
    times = json.loads(sys.stdin.readline())
    args.window_start, args.window_end = times["start"], times["end"]
    asyncio.run(run_load(args, workers, protocol))


# --- (f): the same triggers in a real airflow triggerer ------------------------------------------


def triggerer_main(args: argparse.Namespace) -> None:
    """(f)'s load process: Airflow in the private home, a real triggerer, the workers; then the run.
    Its own CPU (the harness's database work) is not measured: the triggerer's processes are."""
    import in_triggerer

    home = Path(os.environ["AIRFLOW_HOME"])
    in_triggerer.configure_environment(home)  # before Airflow is imported
    protocol = speak_on_stdout_only()
    connection = {"conn_id": CONN_ID, "conn_type": "apixo", "host": args.base_url, "password": API_KEY}
    connection["extra"] = {"requests_per_minute": args.requests_per_minute}
    in_triggerer.prepare_home(home, connection, MODEL)
    # Finished triggers count against the capacity until the supervisor deletes their rows: a
    # capacity of just the tasks in flight (the default 1,000 for 1,000) leaves new ones waiting.
    triggerer = in_triggerer.Triggerer(home, capacity=args.tasks * 3 // 2)
    try:
        triggerer.wait_until_running()
        workers = Workers(args)
        print("ready", file=protocol, flush=True)
        times = json.loads(sys.stdin.readline())
        args.window_start, args.window_end = times["start"], times["end"]
        asyncio.run(run_in_triggerer(args, workers, triggerer, protocol))
    finally:
        triggerer.stop()


async def run_in_triggerer(
    args: argparse.Namespace, workers: Workers, triggerer: Triggerer, protocol: TextIO
) -> None:
    """Keep ``args.tasks`` deferred task instances, each on (a)'s trigger for a task the workers
    submitted; one resumed (its event in Airflow's database) is replaced by a new one."""
    from in_triggerer import PROBE_TASK_ID, Deferrals
    from lag_probe import LoopLagTrigger

    loop = asyncio.get_running_loop()
    workers.attach(loop)
    window = Window(args.window_start, args.window_end)
    deferrals = Deferrals(loop)
    noticed: list[Resumed] = []  # the task instances resumed in the window
    probe = LoopLagTrigger(start=window.start, end=window.end)
    probed = asyncio.run_coroutine_threadsafe(deferrals.defer(probe, window.end + 300, PROBE_TASK_ID), loop)
    threading.Thread(
        target=report_from_triggerer, args=(window, triggerer, probed, noticed, protocol)
    ).start()

    async def slot(start_after: float) -> None:
        await asyncio.sleep(start_after)
        while True:
            task_id, submitted = await workers.submit()
            trigger = provider_trigger(task_id, submitted)
            resumed = await deferrals.defer(trigger, trigger.end_time)
            window.finished(resumed.task, at=resumed.at)
            if window.inside(resumed.at):
                noticed.append(resumed)

    slots = [asyncio.create_task(slot(i * args.ramp / args.tasks)) for i in range(args.tasks)]
    await asyncio.wait(slots, timeout=window.end - time.time() + 300)  # the report thread ends it first


def report_from_triggerer(
    window: Window, triggerer: Triggerer, probed: Future[Resumed], noticed: list[Resumed], protocol: TextIO
) -> None:
    """(f)'s report, from a thread: the triggerer's CPU (supervisor and runner) and waits for a core
    in the window, its memory growth since before its first trigger; the probe's lags and garbage
    collections; Airflow's blocked-loop warnings; and, from the trigger logs, when each trigger
    yielded its event in the runner (row (a)'s moment), to split the delay into the trigger's part
    and Airflow's hand-off to its database."""
    cpu, waits, rss = [], [], [triggerer.rss()]
    for at in (window.start, window.end):
        time.sleep(max(0.0, at - time.time()))
        cpu.append(triggerer.cpu_seconds())
        waits.append(triggerer.cpu_waits())
        rss.append(triggerer.rss())
    try:
        probe = probed.result(timeout=120).event or {}
    except TimeoutError:
        probe = {}
    resumed = list(noticed)
    fired = [(item, triggerer.fired_at(item.map_index)) for item in resumed]
    details = {
        "cpu_seconds": {name: cpu[1][name] - cpu[0][name] for name in cpu[0]},
        "cpu_waits": {name: waits[1][name] - waits[0][name] for name in waits[0]},
        "rss": rss,  # per process: before the first trigger, at the window's start and end
        "blocked": triggerer.blocked_warnings(window.start, window.end),
        "fired_delays": [
            at - item.task["complete_time"] / 1000
            for item, at in fired
            if at and item.task.get("complete_time")
        ],
        "handoffs": [item.at - at for item, at in fired if at],
        "failed": sum(item.event is None for item in resumed),
        "collections": probe.get("collections", []),  # the runner's garbage collections: [generation, s]
    }
    triggerer.stop()
    report = {
        "delays": list(window.delays),
        "lags": probe.get("lags", []),
        "cpu_seconds": sum(details["cpu_seconds"].values()),
        "rss_growth": sum(rss[2].values()) - sum(rss[0].values()),
        "failed": details["failed"],
        "triggerer": details,
    }
    print(json.dumps(report), file=protocol, flush=True)
    os._exit(0)


# --- the orchestra -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(requests_per_minute: int) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "airflow_provider_nanobanana.emulator",
        "--port",
        str(free_port()),
        "--api-key",
        API_KEY,
        "--generation-seconds",
        "10",
        "--generation-seconds-max",
        "20",
        "--requests-per-minute",
        str(requests_per_minute),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving at" not in line:
        raise RuntimeError(f"the emulator did not start: {line!r}")
    return process, line.rsplit(" ", 1)[-1].strip()


def start_redis() -> tuple[subprocess.Popen[bytes], str] | None:
    server = shutil.which("redis-server")
    if server is None:
        return None
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


def emulator_stats(root_url: str) -> dict[str, int]:
    return dict(httpx.get(root_url + "/_emulator/stats", timeout=10).json())


BALANCE_PATH = "/apikeys/current-balance"


class Noise(threading.Thread):
    """(g): another client of the key, unpaced: a balance read every ``60 / per_minute`` s until
    ``until``, its own 429s counted (the emulator counts everybody's)."""

    def __init__(self, base_url: str, per_minute: int, until: float) -> None:
        super().__init__(daemon=True)
        self.base_url, self.spacing, self.until = base_url, 60.0 / per_minute, until
        self.sent = 0
        self.limited_at: list[float] = []

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=10) as client:
            next_at = time.time()
            while next_at < self.until:
                time.sleep(max(0.0, next_at - time.time()))
                if client.get(BALANCE_PATH).status_code == 429:
                    self.limited_at.append(time.time())
                self.sent += 1
                next_at += self.spacing


def provider_429s(root_url: str) -> list[float]:
    """When the provider's requests (not the noise's) were answered 429, in the whole run."""
    answers = httpx.get(root_url + "/_emulator/rate-limited", timeout=10).json()["rate_limited"]
    return sorted(a["at"] for a in answers if not a["path"].endswith(BALANCE_PATH))


def run_scenario(scenario: Scenario, settings: argparse.Namespace, redis_url: str | None) -> dict[str, Any]:
    emulator, base_url = start_emulator(settings.api_limit)
    root_url = base_url.removesuffix("/api/v1")
    loads: list[subprocess.Popen[str]] = []
    homes: list[Path] = []  # each load's AIRFLOW_HOME and log; (f)'s holds Airflow's DB and trigger logs
    try:
        for _ in range(scenario.processes):
            command = [
                sys.executable,
                __file__,
                "--load",
                scenario.mode,
                "--base-url",
                base_url,
                "--tasks",
                str(scenario.tasks // scenario.processes),
                "--ramp",
                str(settings.ramp),
            ]
            if scenario.requests_per_minute:
                command += ["--requests-per-minute", str(scenario.requests_per_minute)]
            if scenario.shared_budget:
                assert redis_url is not None
                command += ["--redis-url", redis_url, "--shared-budget"]
            home = Path(tempfile.mkdtemp(prefix="nanobanana-bench-"))
            homes.append(home)
            env = {**os.environ, "AIRFLOW_HOME": str(home)}
            with (home / "load.log").open("w") as log:
                pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": log}
                loads.append(subprocess.Popen(command, **pipes, text=True, env=env))
        for load in loads:
            assert load.stdout is not None
            if load.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a load process for ({scenario.name}) did not start: see {homes}")
        warmup, seconds = (settings.warmup, settings.seconds) if scenario.tasks > 100 else settings.small
        start = time.time() + warmup
        noise = None
        if scenario.noise_per_minute:
            noise = Noise(base_url, scenario.noise_per_minute, start + seconds)
            noise.start()
        times = json.dumps({"start": start, "end": start + seconds}) + "\n"
        for load in loads:
            assert load.stdin is not None
            load.stdin.write(times)
            load.stdin.flush()
        time.sleep(max(0.0, start - time.time()))
        before = emulator_stats(root_url)
        time.sleep(max(0.0, start + seconds - time.time()))
        after = emulator_stats(root_url)
        sharing = None if noise is None else share_of_the_key(noise, provider_429s(root_url), start, seconds)
        results = [json.loads(load.communicate(timeout=240)[0].strip().splitlines()[-1]) for load in loads]
        for home in homes:  # kept when the row failed, for its logs
            shutil.rmtree(home)
    finally:
        for load in loads:
            load.kill()
        emulator.terminate()
        emulator.wait(timeout=30)
    return summarise(scenario, seconds, results, before, after, sharing)


def share_of_the_key(noise: Noise, theirs: list[float], start: float, seconds: float) -> dict[str, Any]:
    """(g): what the other client sent and met, and how long the provider took to find its share:
    from its first 429 to its last."""
    noise.join(timeout=30)
    return {
        "noise_sent": noise.sent,
        "noise_limited": len(noise.limited_at),
        "provider_limited": len(theirs),
        "provider_limited_in_window": sum(start <= at < start + seconds for at in theirs),
        "adapted_s": theirs[-1] - theirs[0] if theirs else 0.0,
    }


def summarise(
    scenario: Scenario,
    seconds: float,
    results: list[dict[str, Any]],
    before: dict[str, int],
    after: dict[str, int],
    sharing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One row. With another client on the key (g), the 429s are the provider's own."""
    delays = sorted(d for r in results for d in r["delays"])
    lags = sorted(lag for r in results for lag in r["lags"])
    completed = len(delays)
    cpu = sum(r["cpu_seconds"] or 0.0 for r in results)
    triggerer = next((r["triggerer"] for r in results if "triggerer" in r), None)
    return {
        "scenario": scenario.name,
        "label": scenario.label,
        "tasks": scenario.tasks,
        "completed": completed,
        "per_second": completed / seconds,
        "requests_per_task": (after["requests"] - before["requests"]) / max(1, completed),
        "rate_limited": (
            after["rate_limited"] - before["rate_limited"]
            if sharing is None
            else sharing["provider_limited_in_window"]
        ),
        "failed": sum(r.get("failed", 0) for r in results),
        "delay_p50": quantile(delays, 0.50),
        "delay_p99": quantile(delays, 0.99),
        "lag_p99_ms": 1000 * quantile(lags, 0.99),
        "cpu_ms_per_task": 1000 * cpu / max(1, completed),
        "rss_growth_mb": sum(r["rss_growth"] or 0 for r in results) / 2**20,
        "blocked": None if triggerer is None else len(triggerer["blocked"]),
        **({} if triggerer is None else {"triggerer": summarise_triggerer(triggerer, completed)}),
        **({} if sharing is None else {"sharing": sharing}),
    }


def summarise_triggerer(details: dict[str, Any], completed: int) -> dict[str, Any]:
    """(f)'s figures that only a real triggerer has: where its CPU goes, how the delay splits between
    the trigger and Airflow's hand-off, and what Airflow's loop-health warnings said."""
    fired, handoffs = sorted(details["fired_delays"]), sorted(details["handoffs"])
    blocked = details["blocked"]
    before, start, end = details["rss"]
    return {
        **{f"{name}_cpu_ms": 1000 * s / max(1, completed) for name, s in details["cpu_seconds"].items()},
        **{f"{name}_cpu_wait_s": s for name, s in details["cpu_waits"].items()},
        **{f"{name}_rss_ramp_mb": (start[name] - before[name]) / 2**20 for name in before},
        **{f"{name}_rss_window_mb": (end[name] - start[name]) / 2**20 for name in before},
        "fired_p50": quantile(fired, 0.50),
        "fired_p99": quantile(fired, 0.99),
        "handoff_p50": quantile(handoffs, 0.50),
        "handoff_p99": quantile(handoffs, 0.99),
        "blocked_worst": max((seconds for seconds, _ in blocked), default=None),
        "blocked_example": max(blocked)[1] if blocked else None,
        "failed": details["failed"],
        "collections": len(details["collections"]),
        "full_collections": sum(generation == 2 for generation, _ in details["collections"]),
        "collection_longest": max((seconds for _, seconds in details["collections"]), default=0.0),
        "collection_seconds": sum(seconds for _, seconds in details["collections"]),
    }


def quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


COLUMNS = [
    ("", "scenario", "{}"),
    ("in flight", "tasks", "{:d}"),
    ("done", "completed", "{:d}"),
    ("done/s", "per_second", "{:.1f}"),
    ("req/task", "requests_per_task", "{:.2f}"),
    ("429s", "rate_limited", "{:d}"),
    ("failed", "failed", "{:d}"),
    ("delay p50 s", "delay_p50", "{:.2f}"),
    ("delay p99 s", "delay_p99", "{:.2f}"),
    ("lag p99 ms", "lag_p99_ms", "{:.0f}"),
    ("CPU ms/task", "cpu_ms_per_task", "{:.2f}"),
    ("RSS +MB", "rss_growth_mb", "{:.0f}"),
    ("blocked", "blocked", "{:d}"),  # Airflow's "async thread was blocked" warnings; only (f) runs Airflow
]


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[title for title, _, _ in COLUMNS]]
    cells += [["-" if row[key] is None else fmt.format(row[key]) for _, key, fmt in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    legend = [f"({row['scenario']}) {row['label']}" for row in rows if row["tasks"] > 100]
    notes = [triggerer_note(row) for row in rows if "triggerer" in row]
    notes += [sharing_note(row) for row in rows if "sharing" in row]
    return "\n".join([*lines, "", *legend, *notes])


def triggerer_note(row: dict[str, Any]) -> str:
    """(f)'s figures beyond the table's columns, a line each."""
    t = row["triggerer"]
    worst = f", the worst: {t['blocked_example']!r}" if t["blocked_worst"] else ""
    return "\n    ".join(
        [
            f"({row['scenario']}) in the triggerer:",
            f"CPU a task: supervisor {t['supervisor_cpu_ms']:.2f} ms, runner {t['runner_cpu_ms']:.2f} ms",
            f"delay to the trigger's event in the runner (where (a) measures): p50 {t['fired_p50']:.2f} s,"
            f" p99 {t['fired_p99']:.2f} s; then Airflow's hand-off to its database: p50"
            f" {t['handoff_p50']:.2f} s, p99 {t['handoff_p99']:.2f} s",
            f"{row['blocked']} blocked-loop warnings in the window{worst}",
            f"waited, ready to run, for a core in the window: the runner's loop"
            f" {t['runner_cpu_wait_s']:.1f} s, the supervisor {t['supervisor_cpu_wait_s']:.1f} s",
            f"the runner's garbage collections in the window: {t['collections']}, {t['full_collections']}"
            f" of them full, the longest {1000 * t['collection_longest']:.0f} ms,"
            f" {t['collection_seconds']:.2f} s in all",
            f"RSS growth in the ramp and warm-up, then in the window: supervisor"
            f" +{t['supervisor_rss_ramp_mb']:.0f} MB, +{t['supervisor_rss_window_mb']:.0f} MB;"
            f" runner +{t['runner_rss_ramp_mb']:.0f} MB, +{t['runner_rss_window_mb']:.0f} MB",
            f"{t['failed']} triggers failed",
        ]
    )


def sharing_note(row: dict[str, Any]) -> str:
    """(g)'s figures beyond the table's columns."""
    s = row["sharing"]
    return "\n    ".join(
        [
            f"({row['scenario']}) beside another client of the key:",
            f"it sent {s['noise_sent']} requests unpaced, {s['noise_limited']} answered 429",
            f"the provider met {s['provider_limited']} answers 429 in the whole run"
            f" ({row['rate_limited']} in the window), the last {s['adapted_s']:.0f} s after the first",
            f"{row['failed']} tasks failed",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in flight (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=90, help="measured window (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=15, help="before the window (default %(default)s)")
    parser.add_argument(
        "--ramp", type=float, default=15, help="submissions spread over (default %(default)s)"
    )
    parser.add_argument("--api-limit", type=int, default=10_000, help="the emulator's requests per minute")
    parser.add_argument("--only", default="abcdefg", help="which of the 1,000-task ways to run, e.g. fa")
    parser.add_argument(
        "--hundred", action=argparse.BooleanOptionalAction, default=True, help="also the 100-in-flight rows"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    # one load process (internal)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--requests-per-minute", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--shared-budget", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--callback-url", help=argparse.SUPPRESS)
    parser.add_argument("--workers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workers:  # the connection comes from the load process's environment
        asyncio.run(serve_submissions(args, speak_on_stdout_only()))
        return
    if args.load:
        args.mode = args.load
        load_main(args)
        return
    args.small = (10.0, 30.0)
    n = args.tasks
    scenarios = [
        Scenario("a", "this provider's trigger, one loop, budget 6,000/min", "provider", n, 1, 6000),
        Scenario(
            "f", "(a)'s triggers in a real airflow triggerer, connection in its DB", "triggerer", n, 1, 6000
        ),
        Scenario("b", "naive: a new client per poll, fixed cadence", "naive", n),
        Scenario("c", "one keep-alive client (unbounded pool), fixed cadence, no pacing", "keepalive", n),
        Scenario(
            "d", "(a) over two processes, budget 9,600/min shared in Redis", "provider", n, 2, 9600, True
        ),
        Scenario(
            "e", "callback mode: a webhook, then one verifying read, budget 6,000/min", "callback", n, 1, 6000
        ),
        Scenario(
            "g",
            "(a) beside another client spending 3,000/min of the key, unpaced",
            "provider",
            n,
            1,
            6000,
            noise_per_minute=3000,
        ),
    ]
    scenarios = [s for s in scenarios if s.name in args.only]
    redis = start_redis() if any(s.shared_budget for s in scenarios) else None
    if redis is None and any(s.shared_budget for s in scenarios):
        print("(d) skipped: redis-server is not installed (make bench installs it when run as root)")
        scenarios = [s for s in scenarios if not s.shared_budget]
    rows = []
    try:
        for scenario in scenarios:
            print(f"running ({scenario.name}) {scenario.label} ...", flush=True)
            rows.append(run_scenario(scenario, args, redis[1] if redis else None))
    finally:
        if redis is not None:
            redis[0].terminate()
    if args.hundred:
        print("running 100 in flight, (a), (c) and (e) side by side ...", flush=True)
        small = [
            Scenario("a", "provider, 100 in flight", "provider", 100, 1, 6000),
            Scenario("c", "keep-alive, 100 in flight", "keepalive", 100),
            Scenario("e", "callback mode, 100 in flight", "callback", 100, 1, 6000),
        ]
        with ThreadPoolExecutor(max_workers=len(small)) as pool:
            rows += list(pool.map(lambda s: run_scenario(s, args, None), small))
    print()
    warmup, seconds = args.small
    print(
        f"{n} in flight: {args.seconds:g} s measured after {args.warmup:g} s;"
        f" 100 in flight: {seconds:g} s after {warmup:g} s"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

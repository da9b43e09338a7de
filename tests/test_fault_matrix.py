"""The fault matrix: what each fault the API or the network can produce ends in, one test per row.

Rows whose tests live beside the code they pin:
- 429 without ``Retry-After`` and with seconds, on submit and status; 5xx on submit (only 429 and a 503
  with ``Retry-After`` are resent): ``tests/hooks/test_apixo.py`` (``test_status_read_*``,
  ``test_submission_*``);
- a read that hangs past the deadline, async and blocking: ``tests/hooks/test_apixo.py``
  (``test_await_task_abandons_*``, ``test_wait_for_task_abandons_*``);
- the sensor's poke and reschedule modes, unit by unit: ``tests/sensors/test_nanobanana.py``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import respx

from airflow_provider_nanobanana.compat import AirflowFailException
from airflow_provider_nanobanana.exceptions import ApixoTaskFailedError, ApixoTaskRejectedError
from airflow_provider_nanobanana.polling import OutcomeStatus
from tests.dags import provider_dags
from tests.support import FAST, RESCHEDULES_IN_DAG_TEST, RecordingPolicy, apixo_connection, free_port, run

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import DAG

    from airflow_provider_nanobanana.emulator import EmulatorServer
    from airflow_provider_nanobanana.hooks.apixo import ApixoHook
    from airflow_provider_nanobanana.polling import PollOutcome
    from tests.support import EmulatorAdmin

MODEL = "nano-banana"
T2I = {"mode": "text-to-image", "prompt": "a lighthouse"}
STATUS = "/api/v1/statusTask"
FAKE_BASE = "https://apixo.test/api/v1"
ERRORS = 3  # max_consecutive_errors of the waits below

# The contract's failCodes, and whether a new task could succeed where this one failed.
FAIL_CODES = {
    "CONTENT_VIOLATION": False,
    "NSFW_DETECTED": False,
    "PROMPT_TOO_LONG": False,
    "INVALID_PROMPT": False,
    "INVALID_IMAGE_URL": False,
    "IMAGE_TOO_LARGE": False,
    "UNSUPPORTED_FORMAT": False,
    "IMAGE_DOWNLOAD_FAILED": False,
    "INSUFFICIENT_CREDITS": False,
    "SensitiveContent": False,
    "NSFW": False,
    "ProhibitedContentDetected": False,
    "PromptLengthExceeded": False,
    "PROCESSING_TIMEOUT": True,
    "MODEL_UNAVAILABLE": True,
    "GENERATION_FAILED": True,
}


async def wait(hook: ApixoHook, task_id: str, how: str, seconds: float = 10) -> PollOutcome:
    """Wait for the task on the worker (blocking) or as the trigger does (async)."""
    options: dict[str, Any] = {
        "initial_delay": 0,
        "poll_interval": 0.05,
        "deadline": time.time() + seconds,
        "max_consecutive_errors": ERRORS,
    }
    if how == "blocking":
        return hook.wait_for_task(MODEL, task_id, **options)
    try:
        return await hook.await_task(MODEL, task_id, **options)
    finally:
        await hook.aclose()


WAYS = pytest.mark.parametrize("how", ["blocking", "async"])


# --- 429 and 5xx ------------------------------------------------------------------------------------


async def test_429_burst_with_an_http_date_retry_after_on_submit_and_status_is_waited_out_and_succeeds(
    make_hook: Callable[..., ApixoHook], emulator_admin: EmulatorAdmin
) -> None:
    for endpoint in ("submit", "status"):
        emulator_admin.inject_http_errors(429, 1, endpoint, retry_after=3, retry_after_format="http-date")
    policy = RecordingPolicy(max_attempts=3, initial_wait=0.01, max_wait=10)
    hook = make_hook(retry_policy=policy)

    outcome = await wait(hook, hook.submit_task(MODEL, T2I), "blocking")

    assert outcome.status is OutcomeStatus.SUCCESS
    assert emulator_admin.submissions() == 1
    assert len(policy.waits) == 2
    # The date's whole seconds (up to one lost to truncation), not the 0.01 s backoff.
    assert all(1 < seconds <= 3 for seconds in policy.waits)


@WAYS
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_on_status_for_a_while_is_retried_and_the_wait_succeeds(
    make_hook: Callable[..., ApixoHook], emulator_admin: EmulatorAdmin, status: int, how: str
) -> None:
    """Two polls' worth of errors, each retried by the hook: within a budget of three polls."""
    hook = make_hook()
    task_id = hook.submit_task(MODEL, T2I)
    emulator_admin.inject_http_errors(status, 2 * FAST.max_attempts, "status")

    outcome = await wait(hook, task_id, how)

    assert outcome.status is OutcomeStatus.SUCCESS
    assert emulator_admin.request_count("GET", STATUS) > 2 * FAST.max_attempts


# --- the network --------------------------------------------------------------------------------------


def _connect_refused(emulator: EmulatorServer, admin: EmulatorAdmin, mock: respx.MockRouter) -> str:
    return f"http://127.0.0.1:{free_port()}/api/v1"


def _read_timeout(emulator: EmulatorServer, admin: EmulatorAdmin, mock: respx.MockRouter) -> str:
    admin.configure(latency_seconds=2)  # the hooks below time out after 0.3 s
    return emulator.base_url


def _reset_mid_body(emulator: EmulatorServer, admin: EmulatorAdmin, mock: respx.MockRouter) -> str:
    """What httpx raises when the server closes the connection before the body is complete."""
    incomplete = httpx.RemoteProtocolError("peer closed connection without sending complete message body")
    mock.get(f"{FAKE_BASE}/statusTask/{MODEL}").mock(side_effect=incomplete)
    return FAKE_BASE


def _tls_failure(emulator: EmulatorServer, admin: EmulatorAdmin, mock: respx.MockRouter) -> str:
    """HTTPS to the emulator's plain-HTTP port: a real failed handshake."""
    return f"https://127.0.0.1:{emulator.port}/api/v1"


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (_connect_refused, "failed (ConnectError"),
        (_read_timeout, "timed out (ReadTimeout"),
        (_reset_mid_body, "failed (RemoteProtocolError"),
        (_tls_failure, "failed (ConnectError: [SSL"),
    ],
    ids=["connect-refused", "read-timeout", "reset-mid-body", "tls-failure"],
)
def test_transport_failure_on_status_is_retried_within_bounds_then_a_clear_error_naming_the_host(
    make_hook: Callable[..., ApixoHook],
    emulator: EmulatorServer,
    emulator_admin: EmulatorAdmin,
    fault: Callable[[EmulatorServer, EmulatorAdmin, respx.MockRouter], str],
    kind: str,
) -> None:
    policy = RecordingPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.01)
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        base_url = fault(emulator, emulator_admin, mock)
        hook = make_hook(
            "apixo_faulty", connection=apixo_connection(base_url), retry_policy=policy, timeout=0.3
        )
        started = time.monotonic()
        outcome = hook.wait_for_task(
            MODEL,
            "task_1",
            initial_delay=0,
            poll_interval=0.05,
            deadline=time.time() + 30,
            max_consecutive_errors=2,
        )

    assert outcome.status is OutcomeStatus.ERROR
    assert f"request to {base_url}/statusTask/{MODEL} {kind}" in outcome.message
    assert len(policy.waits) == 2 * policy.max_attempts  # two polls, each retried to the policy's end
    assert time.monotonic() - started < 15  # nowhere near the deadline


# --- answers that are not the contract ----------------------------------------------------------------


def _status(**data: Any) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": {"taskId": "task_1", "createTime": 1, **data}}


@WAYS
@pytest.mark.parametrize(
    ("answer", "transient", "says"),
    [
        (httpx.Response(502, text="<html><h1>502 Bad Gateway</h1></html>"), True, "APIXO answered 502"),
        (httpx.Response(200, text="<html>maintenance</html>"), False, "without a JSON envelope"),
        (httpx.Response(200, text='{"code": 200, "data": {"taskId"'), False, "without a JSON envelope"),
        (httpx.Response(200, json={"code": 500, "message": "busy"}), True, "APIXO answered 500 (busy)"),
        (httpx.Response(200, json={"code": 200, "data": {"state": "pending"}}), False, "no taskId"),
        (httpx.Response(200, json=_status(state="queued")), False, "unknown state 'queued'"),
    ],
    ids=[
        "html-error-page",
        "html-under-200",
        "malformed-json",
        "code-500-under-200",
        "no-task-id",
        "unknown-state",
    ],
)
async def test_answer_outside_the_contract_is_a_clear_error_counted_against_the_budget(
    make_hook: Callable[..., ApixoHook],
    emulator: EmulatorServer,
    answer: Any,
    transient: bool,
    says: str,
    how: str,
) -> None:
    """No crash loop: the wait ends after ``max_consecutive_errors`` polls, each retried only if transient."""
    hook = make_hook("apixo_fake", connection=apixo_connection(FAKE_BASE))
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.get(f"/statusTask/{MODEL}").mock(return_value=answer)
        outcome = await wait(hook, "task_1", how)

    assert outcome.status is OutcomeStatus.ERROR
    assert says in outcome.message and "task_1" in outcome.message
    assert route.call_count == ERRORS * (FAST.max_attempts if transient else 1)


@WAYS
@pytest.mark.parametrize(
    ("result_json", "says"),
    [
        (None, "has no resultUrls list"),
        ("{not json", "is not valid JSON"),
        ('{"urls": []}', "has no resultUrls list"),
    ],
    ids=["absent", "not-json", "without-result-urls"],
)
async def test_success_without_usable_result_json_is_a_clear_error_naming_the_task(
    make_hook: Callable[..., ApixoHook],
    emulator: EmulatorServer,
    result_json: str | None,
    says: str,
    how: str,
) -> None:
    hook = make_hook("apixo_fake", connection=apixo_connection(FAKE_BASE))
    success = _status(state="success", **({} if result_json is None else {"resultJson": result_json}))
    with respx.mock(base_url=FAKE_BASE) as mock:
        route = mock.get(f"/statusTask/{MODEL}").respond(json=success)
        outcome = await wait(hook, "task_1", how)

    assert outcome.status is OutcomeStatus.ERROR
    assert f"resultJson of task task_1 {says}" in outcome.message
    assert route.call_count == ERRORS


# --- failed tasks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "transient"), FAIL_CODES.items(), ids=FAIL_CODES)
def test_failed_task_fails_for_good_when_input_caused_and_stays_retryable_when_transient(
    make_hook: Callable[..., ApixoHook], emulator_admin: EmulatorAdmin, code: str, transient: bool
) -> None:
    emulator_admin.fail_next_tasks(code, fail_msg="emulated")
    hook = make_hook()
    task_id = hook.submit_task(MODEL, {**T2I, "prompt": "a lighthouse [emulator:seconds=0.1]"})

    outcome = hook.wait_for_task(
        MODEL, task_id, initial_delay=0, poll_interval=0.05, deadline=time.time() + 10
    )

    assert outcome.status is OutcomeStatus.FAILED
    with pytest.raises(ApixoTaskFailedError, match=f"{task_id} failed: {code}") as raised:
        outcome.result()
    assert isinstance(raised.value, AirflowFailException) is not transient
    assert isinstance(raised.value, ApixoTaskRejectedError) is not transient


# --- the sensor right after submission --------------------------------------------------------------------


@pytest.mark.dag
@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize(
    "dag",
    [
        provider_dags.sensor_poke,
        pytest.param(provider_dags.sensor_reschedule, marks=RESCHEDULES_IN_DAG_TEST),
        provider_dags.sensor_deferrable,
    ],
    ids=["poke", "reschedule", "deferred"],
)
def test_sensor_reading_a_task_not_visible_yet_tolerates_the_404_and_succeeds(
    dag: DAG, emulator_admin: EmulatorAdmin
) -> None:
    """The upstream task submits without reading: the sensor's first two reads answer 404."""
    emulator_admin.inject_http_errors(404, 2, "status")

    state, xcoms = run(dag)

    assert state == "success"
    assert xcoms[("wait", "return_value")]["state"] == "success"
    assert emulator_admin.submissions() == 1
    assert emulator_admin.request_count("GET", STATUS) >= 3

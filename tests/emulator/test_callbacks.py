"""The emulator's webhook deliveries to a loopback receiver: retries, timeouts and callback faults."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_nanobanana.emulator import EmulatorSettings
from airflow_provider_nanobanana.emulator.app import forged_url
from tests.support import LocalReceiver, free_port, get_status, post_task, t2i_body

if TYPE_CHECKING:
    import httpx

    from airflow_provider_nanobanana.emulator import Emulator
    from airflow_provider_nanobanana.emulator.state import CallbackRecord
    from tests.support import EmulatorAdmin


HOOK = "/hook?secret=s"
"""Where the callbacks go on the receiver: a path with a query of its own."""

ENDED = {"delivered", "gave_up", "dropped", "refused"}
"""Outcomes that end a delivery (``retrying`` does not)."""

QUIET = 0.4
"""How long to watch for calls that must not come: longer than any retry delay these tests use."""


def callback_body(url: str, prompt: str = "a watercolor fox") -> dict[str, Any]:
    return {**t2i_body(prompt), "request_type": "callback", "callback_url": url}


def settled(emulator: Emulator, deliveries: int = 1, timeout: float = 5.0) -> list[CallbackRecord]:
    """Wait until ``deliveries`` callback deliveries have ended; every record so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = emulator.callbacks
        if sum(record.outcome in ENDED for record in records) >= deliveries:
            return records
        time.sleep(0.02)
    raise AssertionError(f"{deliveries} callback deliveries did not end: {emulator.callbacks}")


def ends_at(emulator: Emulator, task_id: str) -> float:
    """When the task reaches its terminal state, on the monotonic clock."""
    task = emulator.task(task_id)
    assert task is not None
    return task.created_monotonic + task.generation_seconds


def test_callback_is_posted_once_on_200_with_the_status_envelope(
    api: httpx.Client, raw: httpx.Client, emulator: Emulator
) -> None:
    with LocalReceiver(path=HOOK) as receiver:
        task_id = post_task(api, callback_body(receiver.url))
        [record] = settled(emulator)
        time.sleep(QUIET)
    [(_, path, payload)] = receiver.received
    assert path == "/hook?secret=s"
    assert payload == get_status(api, task_id).json(), "the same envelope statusTask answers"
    assert payload["data"]["state"] == "success" and isinstance(payload["data"]["resultJson"], str)
    assert (record.task_id, record.outcome, record.attempt, record.status_code) == (
        task_id,
        "delivered",
        1,
        200,
    )
    assert record.error is None and not record.duplicate and abs(record.at - time.time()) < 5
    [listed] = raw.get("/_emulator/callbacks").json()["callbacks"]
    assert listed == {
        "task_id": task_id,
        "url": receiver.url,
        "outcome": "delivered",
        "attempt": 1,
        "status_code": 200,
        "error": None,
        "at": record.at,
        "duplicate": False,
    }


def test_callbacks_go_to_loopback_hosts_only(api: httpx.Client, emulator: Emulator) -> None:
    task_id = post_task(api, callback_body("https://example.com/h"))
    [record] = settled(emulator)
    assert (record.task_id, record.outcome, record.attempt) == (task_id, "refused", None)
    assert "loopback" in (record.error or "")


def test_failed_callback_is_retried_with_growing_delays_until_200(
    api: httpx.Client, emulator: Emulator
) -> None:
    emulator.settings.callback_retry_delays = (0.1, 0.3, 0.6)
    with LocalReceiver((503, 0), (500, 0), path=HOOK) as receiver:
        task_id = post_task(api, callback_body(receiver.url))
        records = settled(emulator)
        time.sleep(QUIET)
    assert [(r.attempt, r.status_code, r.outcome) for r in records] == [
        (1, 503, "retrying"),
        (2, 500, "retrying"),
        (3, 200, "delivered"),
    ]
    assert len(receiver.received) == 3
    assert all(body["data"]["taskId"] == task_id for _, _, body in receiver.received)
    starts = [at for at, _, _ in receiver.received]
    first, second = starts[1] - starts[0], starts[2] - starts[1]
    assert 0.1 <= first < 0.3 <= second < 0.6, (first, second)
    assert records[0].at < records[1].at < records[2].at


def test_a_receiver_that_is_down_is_retried_3_times_then_given_up(
    api: httpx.Client, emulator: Emulator
) -> None:
    task_id = post_task(api, callback_body(f"http://127.0.0.1:{free_port()}/hook"))
    records = settled(emulator)
    time.sleep(QUIET)
    assert emulator.callbacks == records, "nothing after giving up"
    assert [(r.attempt, r.outcome) for r in records] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "retrying"),
        (4, "gave_up"),
    ]
    assert all((r.task_id, r.status_code, r.error) == (task_id, None, "ConnectError") for r in records)


def test_a_receiver_slower_than_the_timeout_has_failed(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.callback_timeout_seconds = 0.2
    with LocalReceiver((200, 0.5), path=HOOK) as receiver:
        post_task(api, callback_body(receiver.url))
        records = settled(emulator)
    assert [(r.attempt, r.status_code, r.outcome) for r in records] == [
        (1, None, "retrying"),
        (2, 200, "delivered"),
    ]
    assert records[0].error == "no answer within 0.2 s"
    assert len(receiver.received) == 2


def test_apixo_timing_is_the_default() -> None:
    settings = EmulatorSettings()
    assert (settings.callback_timeout_seconds, settings.callback_retry_delays) == (30.0, (1.0, 2.0, 4.0))


def test_drop_loses_the_next_deliveries_unsent(
    api: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    admin.fault_callbacks(drop=2)
    with LocalReceiver(path=HOOK) as receiver:
        lost = [post_task(api, callback_body(receiver.url, f"lost {n}")) for n in range(2)]
        settled(emulator, deliveries=2)
        kept = post_task(api, callback_body(receiver.url))
        records = settled(emulator, deliveries=3)
        time.sleep(QUIET)
    assert sorted((r.task_id, r.outcome, r.attempt) for r in records[:2]) == sorted(
        (task_id, "dropped", None) for task_id in lost
    )
    assert (records[2].task_id, records[2].outcome) == (kept, "delivered")
    assert [body["data"]["taskId"] for _, _, body in receiver.received] == [kept]


def test_delay_holds_every_first_attempt_until_set_to_0(
    api: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    admin.fault_callbacks(delay_seconds=0.5)
    with LocalReceiver(path=HOOK) as receiver:
        held = [post_task(api, callback_body(receiver.url, f"held {n}")) for n in range(2)]
        settled(emulator, deliveries=2)
        admin.fault_callbacks(delay_seconds=0)
        prompt = post_task(api, callback_body(receiver.url, "prompt"))
        settled(emulator, deliveries=3)
    hit_at = {body["data"]["taskId"]: at for at, _, body in receiver.received}
    for task_id in held:
        assert 0.5 <= hit_at[task_id] - ends_at(emulator, task_id) < 1.5
    assert hit_at[prompt] - ends_at(emulator, prompt) < 0.4
    assert len(receiver.received) == 3


def test_duplicate_posts_the_next_deliveries_twice(
    api: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    admin.fault_callbacks(duplicate=1)
    with LocalReceiver((503, 0), path=HOOK) as receiver:
        doubled = post_task(api, callback_body(receiver.url))
        settled(emulator, deliveries=2)
        single = post_task(api, callback_body(receiver.url))
        records = settled(emulator, deliveries=3)
        time.sleep(QUIET)
    assert [(r.task_id, r.attempt, r.outcome, r.duplicate) for r in records] == [
        (doubled, 1, "retrying", False),
        (doubled, 2, "delivered", False),
        (doubled, 1, "delivered", True),
        (single, 1, "delivered", False),
    ]
    bodies = [body for _, _, body in receiver.received]
    assert bodies[1] == bodies[2] and bodies[1]["data"]["taskId"] == doubled
    assert len(bodies) == 4


def test_forge_precedes_the_next_deliveries_with_one_copy_carrying_a_wrong_token(
    api: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    admin.fault_callbacks(forge=1)
    with LocalReceiver((403, 0), path=HOOK) as receiver:
        forged = post_task(api, callback_body(receiver.url))
        settled(emulator)
        true = post_task(api, callback_body(receiver.url))
        records = settled(emulator, deliveries=2)
        time.sleep(QUIET)
    assert [(r.task_id, r.attempt, r.outcome, r.status_code) for r in records] == [
        (forged, 1, "forged", 403),  # sent once: a refusal is what the forger gets, not a retry
        (forged, 1, "delivered", 200),
        (true, 1, "delivered", 200),
    ]
    paths = [urlsplit(path) for _, path, _ in receiver.received]
    assert [parse_qs(path.query)["secret"] for path in paths] == [["s"]] * 3
    assert parse_qs(paths[0].query)["token"][0].startswith("forged-")
    assert [path.query for path in paths[1:]] == ["secret=s", "secret=s"]
    assert receiver.received[0][2] == receiver.received[1][2]  # the true payload, under a wrong token
    assert records[0].url.endswith(receiver.received[0][1])  # the record shows where the forgery went


def test_a_forged_url_replaces_the_token_and_keeps_the_rest() -> None:
    url = "http://127.0.0.1:8080/nanobanana/callback/ti-1?token=right&x=1"
    forged = urlsplit(forged_url(url))
    query = parse_qs(forged.query)
    assert (forged.netloc, forged.path, query["x"]) == ("127.0.0.1:8080", "/nanobanana/callback/ti-1", ["1"])
    assert query["token"] != ["right"] and len(query["token"]) == 1
    assert forged_url(url) != forged_url(url)


def test_callback_faults_are_checked_and_cleared_by_reset(
    api: httpx.Client, raw: httpx.Client, admin: EmulatorAdmin, emulator: Emulator
) -> None:
    for bad in ({"drop": -1}, {"delay_seconds": -0.1}, {"duplicate": 1.5}, {"forge": -1}, {"typo": 1}):
        assert raw.post("/_emulator/faults", json={"callbacks": bad}).status_code == 422
    with pytest.raises(ValueError, match="negative"):
        emulator.fault_callbacks(drop=-1)
    admin.fault_callbacks(drop=3, delay_seconds=30, duplicate=3, forge=3)
    admin.reset()
    with LocalReceiver(path=HOOK) as receiver:
        task_id = post_task(api, callback_body(receiver.url))
        [record] = settled(emulator, timeout=2)
        time.sleep(QUIET)
    assert (record.task_id, record.outcome, record.duplicate) == (task_id, "delivered", False)
    assert len(receiver.received) == 1


def test_reset_stops_deliveries_in_flight(api: httpx.Client, emulator: Emulator) -> None:
    emulator.settings.callback_retry_delays = (0.3, 0.3, 0.3)
    with LocalReceiver((503, 0), path=HOOK) as receiver:
        post_task(api, callback_body(receiver.url))
        deadline = time.monotonic() + 3
        while not emulator.callbacks and time.monotonic() < deadline:
            time.sleep(0.02)
        emulator.reset()
        time.sleep(0.6)
    assert emulator.callbacks == []
    assert len(receiver.received) == 1


def test_callback_settings_are_patched_and_shown(raw: httpx.Client, emulator: Emulator) -> None:
    patch = {"callback_retry_delays": [0.01, 0.02], "callback_timeout_seconds": 1.5}
    answer = raw.patch("/_emulator/settings", json=patch)
    assert answer.status_code == 200
    assert (answer.json()["callback_retry_delays"], answer.json()["callback_timeout_seconds"]) == (
        [0.01, 0.02],
        1.5,
    )
    assert emulator.settings.callback_retry_delays == (0.01, 0.02)
    for bad in ({"callback_retry_delays": [-1]}, {"callback_timeout_seconds": 0}):
        assert raw.patch("/_emulator/settings", json=bad).status_code == 422

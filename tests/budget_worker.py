"""One process of the shared-budget test: a loop of waits on one key, submitting as fast as allowed.

Run as ``python -m tests.budget_worker BASE_URL API_KEY EXTRA_JSON SLOTS``; it prints ``ready``,
starts at the first line on stdin (so that both processes start together), stops at the second, then
prints what it did.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

MODEL = "nano-banana"
TASK_INPUT = {
    "mode": "text-to-image",
    "prompt": "two lanterns",
    "aspect_ratio": "1:1",
    "output_format": "png",
}


async def run(slots: int) -> dict[str, int]:
    from airflow_provider_nanobanana.hooks.apixo import ApixoHook
    from airflow_provider_nanobanana.triggers.apixo import ApixoTaskTrigger

    done = {"submitted": 0}
    hook = ApixoHook("apixo_budget")

    async def slot() -> None:
        task_id = await hook.asubmit_task(MODEL, TASK_INPUT)
        done["submitted"] += 1
        trigger = ApixoTaskTrigger(
            apixo_task_id=task_id,
            end_time=time.time() + 60,
            model=MODEL,
            apixo_conn_id="apixo_budget",
            poll_interval=0.2,
            initial_delay=0.2,
        )
        async for _ in trigger.run():
            pass

    waits = [asyncio.create_task(slot()) for _ in range(slots)]
    await asyncio.to_thread(sys.stdin.readline)
    del waits  # still parked on the budget: the process ends with them
    return done


def main() -> None:
    base_url, api_key, extra, slots = sys.argv[1:5]
    conn = {"conn_type": "apixo", "host": base_url, "password": api_key, "extra": json.loads(extra)}
    os.environ["AIRFLOW_CONN_APIXO_BUDGET"] = json.dumps(conn)
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # logs to stderr; stdout speaks to the test
    import airflow_provider_nanobanana.triggers.nanobanana  # noqa: F401

    print("ready", file=protocol, flush=True)
    sys.stdin.readline()
    print(json.dumps(asyncio.run(run(int(slots)))), file=protocol, flush=True)
    os._exit(0)  # waits still parked on the budget need no teardown


if __name__ == "__main__":
    main()

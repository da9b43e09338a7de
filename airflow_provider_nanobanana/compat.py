"""What differs between the Airflow runtimes the provider runs in, in one place.

The rest of the package asks here instead of working around Airflow where it stands.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    from airflow.sdk import Connection


async def aget_connection(conn_id: str) -> Connection:
    """Look a connection up from a trigger without blocking its event loop.

    The async lookup finds connections saved in Airflow's database only where the runtime can ask
    for them asynchronously. ``airflow dags test`` and ``dag.test()`` run triggers in-process with
    comms that can only ask synchronously (Airflow 3.3.2: ``InProcessSupervisorComms`` has no
    ``asend``), so there the async lookup sees environment variables and secrets backends only.
    Where it finds nothing, the synchronous lookup asks again from a worker thread: that works in
    every runtime, the triggerer's included, and costs nothing on the usual path.
    """
    try:
        return await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException:
        return await asyncio.to_thread(BaseHook.get_connection, conn_id)

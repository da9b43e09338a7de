"""What differs between the Airflow 3 versions and runtimes the provider runs in, in one place.

The provider supports Airflow 3.1 to 3.3 from one wheel. Every name that moved is imported here,
from its newest home first, then from where older versions keep it; every feature an older version
lacks is a flag here, and the module that uses it says how it degrades. Nothing else in the package
looks at Airflow's version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow import __version__ as airflow_version
from airflow.sdk import BaseHook
from asgiref.sync import sync_to_async
from packaging.version import Version

if TYPE_CHECKING:
    from uuid import UUID

    from airflow.sdk import Connection

_installed = Version(Version(airflow_version).base_version)
AIRFLOW_V_3_2_PLUS = _installed >= Version("3.2.0")
"""Task instance ids are UUID columns from 3.2 (strings of 36 characters before)."""
AIRFLOW_V_3_3_PLUS = _installed >= Version("3.3.0")
"""``task_state_store`` came with 3.3 (:mod:`.state_store` stands in before it)."""
ASYNC_CONNECTION_LOOKUP = _installed >= Version("3.3.2")
"""Before 3.3.2, ``BaseHook.aget_connection`` masks the connection's secrets with a blocking call that
can deadlock a busy triggerer's loop."""

try:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
        TaskDeferred,
    )

try:
    from airflow.sdk.bases.decorator import determine_kwargs
except ImportError:  # Airflow 3.1
    from airflow.utils.operator_helpers import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        determine_kwargs,
    )

__all__ = [
    "AIRFLOW_V_3_3_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "TaskDeferred",
    "aget_connection",
    "determine_kwargs",
    "task_instance_key",
]


async def aget_connection(conn_id: str) -> Connection:
    """Look a connection up from a trigger without blocking its event loop.

    From 3.3.2 the async lookup is native. It finds connections saved in Airflow's database only
    where the runtime can ask for them asynchronously: ``airflow dags test`` and ``dag.test()`` run
    triggers in-process with comms that can only ask synchronously (3.3.2's
    ``InProcessSupervisorComms`` has no ``asend``). Where it finds nothing, and on older versions,
    the synchronous lookup runs in asgiref's worker thread, which the triggerer's comms answer from
    the loop: that works in every runtime and costs nothing on the usual path.
    """
    if ASYNC_CONNECTION_LOOKUP:
        try:
            return await BaseHook.aget_connection(conn_id)
        except AirflowNotFoundException:
            pass
    return await sync_to_async(BaseHook.get_connection)(conn_id)


def task_instance_key(ti_id: UUID) -> UUID | str:
    """A task instance's primary key as this Airflow's ``task_instance.id`` column takes it."""
    return ti_id if AIRFLOW_V_3_2_PLUS else str(ti_id)

"""What differs between the Airflow 3 versions and runtimes the provider runs in, in one place.

The provider supports Airflow 3.0 to 3.3 from one wheel. Every name that moved is imported here,
from its newest home first, then from where older versions keep it; every feature an older version
lacks is a flag here, and the module that uses it says how it degrades. Nothing else in the package
looks at Airflow's version.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow import __version__ as airflow_version
from asgiref.sync import sync_to_async
from packaging.version import Version

if TYPE_CHECKING:
    from uuid import UUID

    from airflow.sdk import Connection, Context, ObjectStoragePath

_installed = Version(Version(airflow_version).base_version)
AIRFLOW_V_3_1_PLUS = _installed >= Version("3.1.0")
"""From 3.1 ``dag.test()`` saves the DAG, so the assets its tasks update are active (tests only)."""
AIRFLOW_V_3_2_PLUS = _installed >= Version("3.2.0")
"""Task instance ids are UUID columns from 3.2 (strings of 36 characters before)."""
AIRFLOW_V_3_3_PLUS = _installed >= Version("3.3.0")
"""``task_state_store`` came with 3.3 (:mod:`.state_store` stands in before it)."""
ASYNC_CONNECTION_LOOKUP = _installed >= Version("3.3.2")
"""Before 3.3.2, ``BaseHook.aget_connection`` masks the connection's secrets with a blocking call that
can deadlock a busy triggerer's loop."""

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined,unused-ignore]

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
except ImportError:  # Airflow 3.0 and 3.1
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
except ImportError:  # Airflow 3.0 and 3.1
    from airflow.utils.operator_helpers import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        determine_kwargs,
    )

try:
    from airflow.sdk.definitions.context import context_merge
except ImportError:  # Airflow 3.0
    from airflow.utils.context import context_merge  # type: ignore[no-redef,attr-defined,unused-ignore]

try:
    from airflow.sdk.observability.stats import Stats
except ImportError:  # Airflow 3.0 and 3.1 (3.2 and 3.3 keep a deprecated shim here)
    from airflow.stats import Stats  # type: ignore[no-redef,attr-defined,unused-ignore]

__all__ = [
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "ASYNC_CONNECTION_LOOKUP",
    "DEFERRING_TRY",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "BaseHook",
    "Stats",
    "TaskDeferred",
    "aget_connection",
    "context_merge",
    "determine_kwargs",
    "object_location",
    "own_xcom",
    "resumes_an_earlier_try",
    "task_instance_key",
]

DEFERRING_TRY = "deferring_try"
"""The key of a trigger event that names the try that deferred."""

log = logging.getLogger(__name__)


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


def own_xcom(context: Context, task_id: str, key: str) -> Any:
    """This task instance's own XCom ``key``: Airflow 3.3 returns every map index's unless told which."""
    ti = context["ti"]
    return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=ti.map_index)


def object_location(path: ObjectStoragePath) -> tuple[str | None, str, str]:
    """An object's connection id, bucket and key, read from its URI (``s3://conn_id@bucket/key``),
    which every version writes alike: ``conn_id`` is an attribute only from 3.2, and 3.1's ``bucket``
    includes the connection id."""
    authority, _, key = str(path).partition("://")[2].partition("/")
    conn_id, _, bucket = authority.rpartition("@")
    return conn_id or None, bucket, key


def task_instance_key(ti_id: UUID) -> UUID | str:
    """A task instance's primary key as this Airflow's ``task_instance.id`` column takes it."""
    return ti_id if AIRFLOW_V_3_2_PLUS else str(ti_id)


def resumes_an_earlier_try(context: Context, next_kwargs: dict[str, Any] | None) -> bool:
    """Whether this try is resumed with the event of an earlier try that deferred.

    Airflow 3.0 keeps a deferred task's resume method and event when the task fails after it, so
    the next try starts by resuming with the earlier try's event: a failure replayed, a retry that
    never retries. Such a try must start over; from 3.1 a retry always starts afresh. The trigger
    and the webhook route put the deferring try in their events (:data:`DEFERRING_TRY`).
    """
    event = (next_kwargs or {}).get("event")
    deferred_by = event.get(DEFERRING_TRY) if isinstance(event, dict) else None
    if deferred_by is None or deferred_by == (try_number := context["ti"].try_number):
        return False
    log.warning("Airflow resumed try %s with the event of try %s: starting over", try_number, deferred_by)
    return True

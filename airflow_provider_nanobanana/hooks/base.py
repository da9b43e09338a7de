"""ApixoBaseHook: the ``apixo`` connection, and the shared client and budget its requests use.

The Airflow side of the transport: the connection is looked up (without blocking an event loop
where there is one; the triggers of one loop share a recent lookup, :class:`ConnectionLookups`), its
settings read once, and the key's client leased from the process's registry (:mod:`.clients`) and its
budget from :mod:`...pacing`. How requests go out on them, and when they are retried, is
:mod:`.transport`'s.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_nanobanana.compat import AirflowNotFoundException, BaseHook, aget_connection
from airflow_provider_nanobanana.exceptions import ApixoConnectionNotFoundError
from airflow_provider_nanobanana.hooks.clients import CLIENTS, AsyncClient, SyncClient
from airflow_provider_nanobanana.hooks.settings import ConnectionSettings
from airflow_provider_nanobanana.hooks.transport import RetryPolicy, Transport, client_options
from airflow_provider_nanobanana.pacing import RequestPacer, pacer_for

if TYPE_CHECKING:
    import httpx

CONNECTION_REUSE_SECONDS = 30.0
"""How long the triggers of one event loop reuse a lookup of their connection: an edited connection
reaches the triggers that start later than this after the edit."""


@dataclass(frozen=True)
class _Lookup:
    started: float  # the loop's clock
    settings: asyncio.Task[ConnectionSettings]


class ConnectionLookups:
    """The async lookups of ``apixo`` connections, shared by the hooks of one event loop for a while.

    In the triggerer every trigger looks its connection up when it starts, and each lookup is three
    round trips from the trigger runner to its supervisor (the connection, then masking its key and
    its extras), which the supervisor serves between its database work: with a thousand tasks in
    flight, about sixty lookups a second of the same connection. A lookup is reused by the hooks of
    its loop for ``seconds``; hooks that start while one is under way wait for it instead of asking
    too (a triggerer that starts with a thousand triggers makes one). A failed lookup is neither kept
    nor shared: each hook that waited for it then looks up on its own and meets its own error, as
    without sharing (one exception raised in many triggers would carry their tracebacks into each
    other's failures).

    Only the settings are kept (their ``repr`` leaves the key out), in this process's memory, per
    loop (as the clients are, :mod:`.clients`) and per connection id and hook timeout; nothing here
    logs. Each loop is its own: the worker's blocking calls and each ``dag.test()`` trigger look up
    afresh.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, float | None], _Lookup]
        ] = weakref.WeakKeyDictionary()

    async def settings(self, conn_id: str, timeout: float | None) -> ConnectionSettings:
        """The settings of ``conn_id`` (with the hook's own ``timeout``), looked up unless this loop
        looked them up less than ``seconds`` ago."""
        loop = asyncio.get_running_loop()
        with self._lock:
            lookups = self._loops.setdefault(loop, {})
        key = (conn_id, timeout)
        lookup = lookups.get(key)
        if lookup is None or loop.time() - lookup.started > self.seconds:
            lookup = lookups[key] = _Lookup(loop.time(), loop.create_task(_look_up(conn_id, timeout)))
        try:
            return await asyncio.shield(lookup.settings)  # a cancelled waiter leaves it to the others
        except Exception:
            if lookups.get(key) is lookup:
                del lookups[key]
        return await _look_up(conn_id, timeout)


async def _look_up(conn_id: str, timeout: float | None) -> ConnectionSettings:
    try:
        conn = await aget_connection(conn_id)
    except AirflowNotFoundException:
        where = "for the async lookup (in the triggerer, for a deferred task)"
        raise ApixoConnectionNotFoundError(conn_id, where) from None
    return ConnectionSettings.from_connection(conn, timeout)


CONNECTIONS = ConnectionLookups(CONNECTION_REUSE_SECONDS)


class ApixoBaseHook(BaseHook):
    """The ``apixo`` connection and the transport every APIXO call goes through.

    :param apixo_conn_id: the ``apixo`` connection.
    :param retry_policy: how transient failures are retried.
    :param timeout: per-request timeout in seconds, overriding the connection's.
    """

    conn_name_attr = "apixo_conn_id"
    default_conn_name = "apixo_default"
    conn_type = "apixo"
    hook_name = "APIXO"

    def __init__(
        self,
        apixo_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.apixo_conn_id = apixo_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self.timeout = timeout
        self._settings: ConnectionSettings | None = None
        self._pacer: RequestPacer | None = None
        self._shared: SyncClient | None = None
        self._ashared: AsyncClient | None = None
        self._ashared_loop: asyncio.AbstractEventLoop | None = None

    def get_conn(self) -> httpx.Client:
        """The process's sync client for this connection's key, leased on first use."""
        return self._sync_client().client

    async def aget_conn(self) -> httpx.AsyncClient:
        """The running loop's client for this key; the connection is looked up without blocking."""
        return (await self._async_client()).client

    @property
    def settings(self) -> ConnectionSettings:
        """The connection's settings; a sync lookup, so never from inside an event loop."""
        if self._settings is None:
            try:
                conn = self.get_connection(self.apixo_conn_id)
            except AirflowNotFoundException:
                raise ApixoConnectionNotFoundError(self.apixo_conn_id, "for this task") from None
            self._settings = ConnectionSettings.from_connection(conn, self.timeout)
        return self._settings

    @property
    def pacer(self) -> RequestPacer:
        """The request budget of this connection's key, shared by the whole process."""
        if self._pacer is None:
            self._pacer = pacer_for(self.settings.pacer_config())
        return self._pacer

    def close(self) -> None:
        """Let go of the sync client (closed once no hook of the process uses it)."""
        if self._shared is not None:
            self._shared = None
            CLIENTS.release(self.settings.client_key)

    async def aclose(self) -> None:
        """Let go of the async client (closed once no hook of the loop uses it). A lease taken in
        another loop, one that has ended, can only be abandoned there."""
        if self._ashared is not None and self._ashared_loop is not None:
            self._ashared = None
            if self._ashared_loop is asyncio.get_running_loop():
                await CLIENTS.arelease(self.settings.client_key)
            else:
                CLIENTS.abandon(self._ashared_loop, self.settings.client_key)

    def _sync_client(self) -> SyncClient:
        if self._shared is None:
            settings = self.settings
            options = client_options(settings)
            self._shared = CLIENTS.lease(settings.client_key, options, settings.max_in_flight)
        return self._shared

    async def _async_client(self) -> AsyncClient:
        loop = asyncio.get_running_loop()
        if self._ashared is None or self._ashared_loop is not loop:
            if self._ashared is not None and self._ashared_loop is not None:
                CLIENTS.abandon(self._ashared_loop, self.settings.client_key)
            if self._settings is None:
                self._settings = await CONNECTIONS.settings(self.apixo_conn_id, self.timeout)
            settings = self.settings
            self._ashared = CLIENTS.alease(
                settings.client_key, client_options(settings), settings.max_in_flight
            )
            self._ashared_loop = loop
        return self._ashared

    @property
    def transport(self) -> Transport:
        """How this hook's requests go out, with its retry policy as it is now."""
        return Transport(self.apixo_conn_id, self.retry_policy, self.pacer, self.log)

    def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        """A blocking request on the process's client (see :meth:`.Transport.request`)."""
        shared = self._sync_client()
        return self.transport.request(
            shared, method, path, what=what, timeout=self.settings.timeout, **kwargs
        )

    async def _acall(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        """A request on the running loop's client (see :meth:`.Transport.arequest`)."""
        shared = await self._async_client()
        return await self.transport.arequest(shared, method, path, what=what, **kwargs)

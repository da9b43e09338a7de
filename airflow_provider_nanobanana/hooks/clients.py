"""Shared httpx clients: one per APIXO key and settings per process, one async client per event loop.

Building an ``httpx.AsyncClient`` costs about 24 ms of CPU and a megabyte (its TLS context), a
request on a kept-alive one about 1 ms: a triggerer running a thousand waits must not build a
thousand clients. Clients are reference-counted and closed when their last hook lets go. An async
client belongs to the loop it was made in and is never handed to another (a client bound to a closed
loop breaks), so async entries are kept per loop. At most ``max_in_flight`` requests use a client at
once: the rest wait on its ``slots`` (in order) instead of queueing inside httpcore's pool, which
degrades when hundreds of requests queue there. Registry keys carry a hash of the API key, never the key.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

if TYPE_CHECKING:
    from collections.abc import Hashable, Mapping

ClientT = TypeVar("ClientT", httpx.Client, httpx.AsyncClient)
SlotsT = TypeVar("SlotsT", threading.BoundedSemaphore, asyncio.Semaphore)


@dataclass(eq=False)
class SharedClient(Generic[ClientT, SlotsT]):
    """A client, the slots that cap its requests in flight, and how many hooks use it."""

    client: ClientT
    slots: SlotsT
    users: int = field(default=0)


SyncClient = SharedClient[httpx.Client, threading.BoundedSemaphore]
AsyncClient = SharedClient[httpx.AsyncClient, asyncio.Semaphore]


def _limits(max_in_flight: int) -> httpx.Limits:
    """A pool as large as what may be in flight: nothing ever waits inside it."""
    return httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)


class ClientRegistry:
    """The process's shared clients, keyed by a settings fingerprint that holds no secret."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sync: dict[Hashable, SyncClient] = {}
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, AsyncClient]] = (
            weakref.WeakKeyDictionary()
        )

    def lease(self, key: Hashable, options: Mapping[str, Any], max_in_flight: int) -> SyncClient:
        """The sync client for ``key``, made on first use; pair every lease with :meth:`release`."""
        with self._lock:
            shared = self._sync.get(key)
            if shared is None:
                client = httpx.Client(**options, limits=_limits(max_in_flight))
                shared = self._sync[key] = SharedClient(client, threading.BoundedSemaphore(max_in_flight))
            shared.users += 1
            return shared

    def release(self, key: Hashable) -> None:
        with self._lock:
            shared = self._sync.get(key)
            if shared is None:
                return
            shared.users -= 1
            if shared.users > 0:
                return
            del self._sync[key]
        shared.client.close()

    def alease(self, key: Hashable, options: Mapping[str, Any], max_in_flight: int) -> AsyncClient:
        """The running loop's async client for ``key``; pair every lease with :meth:`arelease`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = self._async.setdefault(loop, {})
            shared = clients.get(key)
            if shared is None:
                client = httpx.AsyncClient(**options, limits=_limits(max_in_flight))
                shared = clients[key] = SharedClient(client, asyncio.Semaphore(max_in_flight))
            shared.users += 1
            return shared

    async def arelease(self, key: Hashable) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = self._async.get(loop, {})
            shared = clients.get(key)
            if shared is None:
                return
            shared.users -= 1
            if shared.users > 0:
                return
            del clients[key]
        await shared.client.aclose()

    def abandon(self, loop: asyncio.AbstractEventLoop, key: Hashable) -> None:
        """Drop a lease taken in ``loop`` from outside it (the loop has ended, or is not running
        here): its client cannot be closed from another loop, but is no longer kept."""
        with self._lock:
            clients = self._async.get(loop, {})
            shared = clients.get(key)
            if shared is not None:
                shared.users -= 1
                if shared.users <= 0:
                    del clients[key]

    def leased_keys(self) -> list[Hashable]:
        """The keys of the open clients (sync, then async over all live loops)."""
        with self._lock:
            return [*self._sync, *(key for clients in self._async.values() for key in clients)]

    def open_clients(self) -> int:
        """How many clients are open in this process (sync, plus async over all live loops)."""
        with self._lock:
            return len(self._sync) + sum(len(clients) for clients in self._async.values())


CLIENTS = ClientRegistry()

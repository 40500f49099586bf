"""The live stream (WebSocket ``/v1/stream``): fan-out with a bounded queue per client.

The writer (a request thread or the enforcer, under the write lock) calls :meth:`StreamHub.
publish_account` and :meth:`StreamHub.publish_book`; they only append to the clients' queues
(O(clients), no I/O, no await) and wake each client's sender on its event loop. A client whose
queue is full is marked dropped at once: its sender closes the connection with code
:data:`SLOW_CLIENT_CODE` and a reason. Nothing the writer does ever waits for a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

if TYPE_CHECKING:
    from pmargin.service.app import Service

__all__ = ["SLOW_CLIENT_CODE", "StreamClient", "StreamHub", "serve_stream"]

SLOW_CLIENT_CODE = 4008
"""Close code of a client dropped because its queue was full."""


@dataclass(eq=False)
class StreamClient:
    """One connected client: what it may see and its bounded queue."""

    role: str
    accounts: frozenset[str]
    loop: asyncio.AbstractEventLoop
    limit: int
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: str | None = None
    sent: int = 0

    def offer(self, msg: dict[str, Any]) -> bool:
        """Queue a message (writer side); False if the client is (now) dropped."""
        if self.dropped is not None:
            return False
        if len(self.queue) >= self.limit:
            self.dropped = (f"slow client: {self.limit} messages queued and not read; "
                            "reconnect and read faster")
            self.queue.clear()
        else:
            self.queue.append(msg)
        try:
            self.loop.call_soon_threadsafe(self.wake.set)
            if self.dropped is not None:
                self.loop.call_soon_threadsafe(self.gone.set)
        except RuntimeError:  # the loop is closed: the client is gone
            self.dropped = self.dropped or "closed"
        return self.dropped is None


class StreamHub:
    """Connected clients and counters (for ``/v1/book`` and metrics)."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self.clients: set[StreamClient] = set()
        self.dropped_total = 0

    def add(self, role: str, accounts: frozenset[str], loop: asyncio.AbstractEventLoop
            ) -> StreamClient:
        """Register a client (call from its event loop)."""
        c = StreamClient(role, accounts, loop, self.queue_size)
        with self._lock:
            self.clients.add(c)
        return c

    def remove(self, c: StreamClient) -> None:
        """Unregister a client."""
        with self._lock:
            self.clients.discard(c)

    def _snapshot(self) -> list[StreamClient]:
        with self._lock:
            return list(self.clients)

    def wants_accounts(self) -> set[str]:
        """Accounts some trader client follows."""
        return {a for c in self._snapshot() if c.role == "trader" for a in c.accounts}

    def has_risk(self) -> bool:
        """Whether a risk client is connected."""
        return any(c.role == "risk" for c in self._snapshot())

    def publish_account(self, account: str, msg: dict[str, Any]) -> None:
        """Send to the trader clients of ``account``."""
        for c in self._snapshot():
            if c.role == "trader" and account in c.accounts:
                self._offer(c, msg)

    def publish_book(self, msg: dict[str, Any]) -> None:
        """Send to every risk client."""
        for c in self._snapshot():
            if c.role == "risk":
                self._offer(c, msg)

    def _offer(self, c: StreamClient, msg: dict[str, Any]) -> None:
        was = c.dropped
        c.offer(msg)
        if was is None and c.dropped is not None:
            with self._lock:
                self.dropped_total += 1

    def stats(self) -> dict[str, int]:
        """Clients connected (by role) and clients dropped since start."""
        cs = self._snapshot()
        return {"clients": len(cs), "risk": sum(c.role == "risk" for c in cs),
                "trader": sum(c.role == "trader" for c in cs),
                "dropped_total": self.dropped_total}


async def serve_stream(service: Service, ws: WebSocket) -> None:
    """One WebSocket client of ``/v1/stream`` from handshake to close.

    The key comes from the ``Authorization: Bearer`` header, the ``key`` query parameter or,
    failing both, the first message (``{"key": "..."}``, within ``[stream]
    auth_timeout_seconds``). A ``trader`` key follows its own account (margin updates, health
    transitions, liquidation steps); a ``risk`` key gets book-level updates. Other roles and
    bad keys are closed with 4401 / 4403 and a reason.
    """
    await ws.accept()
    key = (ws.headers.get("authorization") or "").removeprefix("Bearer ").strip()
    key = key or ws.query_params.get("key", "")
    if not key:
        try:
            first = await asyncio.wait_for(ws.receive_json(),
                                           service.cfg.stream.auth_timeout_seconds)
            key = str(first.get("key", "")) if isinstance(first, dict) else ""
        except (TimeoutError, ValueError, WebSocketDisconnect):
            key = ""
    info = await asyncio.to_thread(service.store.key_info, key) if key else None
    if info is None:
        await ws.close(4401, "missing or invalid API key (header, ?key= or first message)")
        return
    role, own, _ = info
    if role not in ("trader", "risk") or (role == "trader" and own is None):
        await ws.close(4403, f"role {role} has no stream (trader or risk)")
        return
    limit = service.cfg.stream.socket_buffer_bytes
    transport = _bound_buffers(ws, limit)
    hub: StreamHub = service.stream
    client = hub.add(role, frozenset([own] if own else []), asyncio.get_running_loop())
    try:
        await ws.send_json({"type": "hello", "role": role, "accounts": sorted(client.accounts),
                            "seq": service.state.seq, "queue_size": client.limit})
        sender = asyncio.create_task(_pump(ws, client, transport, limit))
        reader = asyncio.create_task(_drain_incoming(ws))
        gone = asyncio.create_task(client.gone.wait())
        await asyncio.wait({sender, reader, gone}, return_when=asyncio.FIRST_COMPLETED)
        for t in (sender, reader, gone):
            t.cancel()
        hub.remove(client)
        if client.dropped is not None and client.dropped != "closed":
            with contextlib.suppress(Exception):
                # a stalled client reads the close frame once it reads again (bounded wait)
                await asyncio.wait_for(ws.close(SLOW_CLIENT_CODE, client.dropped[:120]), 60)
    finally:
        hub.remove(client)


async def _pump(ws: WebSocket, c: StreamClient, transport: Any, limit: int) -> None:
    while True:
        await c.wake.wait()
        c.wake.clear()
        while c.queue and c.dropped is None:
            # the ASGI server may buffer without limit (uvicorn's sans-I/O protocol writes
            # straight to the transport): wait here while the client has not taken what was
            # sent, so that its queue, not the server's memory, takes the back-pressure
            while transport is not None and transport.get_write_buffer_size() > limit:
                if c.dropped is not None:
                    return
                await asyncio.sleep(0.01)
            await ws.send_json(c.queue.popleft())
            c.sent += 1
        if c.dropped is not None:
            return


async def _drain_incoming(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()


def _bound_buffers(ws: WebSocket, nbytes: int) -> Any:
    """Bound what the kernel and the transport hold for this client (best effort).

    Without it a stalled reader absorbs megabytes of socket buffers before a send blocks, so
    the per-client queue (the back-pressure the service controls) would fill only long after
    the client stopped reading. Found through the ASGI server's protocol object (uvicorn's);
    with another server the buffers stay as they are and only the queue bounds the client.
    """
    import socket

    transport = _find_transport(getattr(ws, "_send", None), 6)
    if transport is None:
        return None
    with contextlib.suppress(Exception):
        transport.set_write_buffer_limits(high=nbytes)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
    return transport


def _find_transport(fn: Any, depth: int) -> Any:
    """The asyncio transport behind an ASGI ``send`` (through middleware closures), or None."""
    if fn is None or depth == 0:
        return None
    owner = getattr(fn, "__self__", None)
    t = getattr(owner, "transport", None)
    if t is not None and hasattr(t, "get_write_buffer_size"):
        return t
    for cell in getattr(fn, "__closure__", None) or ():
        with contextlib.suppress(ValueError):
            if callable(cell.cell_contents):
                t = _find_transport(cell.cell_contents, depth - 1)
                if t is not None:
                    return t
    return None

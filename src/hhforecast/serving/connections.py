"""Slow or idle connections cannot hold the server: a deadline to send a request, and a cap.

uvicorn's h11 protocol waits for a request's headers forever: a client that connects and sends
one byte now and then (slowloris) keeps a file descriptor, and twenty thousand of them leave
none for anyone else, /health included. uvicorn's own knobs do not bound that: its keep-alive
timeout is cancelled by the first byte received, and `limit_concurrency` answers 503 to every
request (/health too) once the slow connections reach it, while keeping them open.

`GuardedH11Protocol` adds two rules to uvicorn's h11 protocol:

- a connection has `request_timeout` seconds to send a whole request (line, headers and body),
  counted from when it connected or its previous answer was sent; a byte now and then does not
  extend it. Past it, the connection is closed.
- at most `max_connections` connections are open. A new connection beyond that closes the one
  that has waited longest for its request (slow and idle connections go first); only when
  every other connection is being answered is the new one closed instead. So a client that
  sends its request at once (a /health probe) is answered unless `max_connections` newer
  connections arrive before its request does.

It also sends each answer's head (status line and headers) with the start of its body, in one
write: uvicorn writes them apart, a second system call and a second TCP segment per answer.

And it sets what the serving process itself may use: open files for `max_connections`, and one
BLAS thread (`one_blas_thread`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from functools import partial
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

__all__ = [
    "GuardedH11Protocol",
    "accept_batch",
    "guarded_protocol",
    "one_blas_thread",
    "raise_open_file_limit",
]

log = logging.getLogger("hhforecast.serving")

RESERVED_FILES = 128
"""File descriptors kept for the process itself (model files, the log, sockets it opens)."""

_READING = (h11.IDLE, h11.SEND_BODY)
"""The client's h11 states while its request is not yet all received."""

# The connections of each server still waiting for (part of) a request, longest waiting first.
_waiting_by_server: weakref.WeakKeyDictionary[ServerState, dict[GuardedH11Protocol, None]] = (
    weakref.WeakKeyDictionary()
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline to send a request and a cap on connections."""

    def __init__(
        self,
        config: Any,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        request_timeout: float,
        max_connections: int,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self._waiting = _waiting_by_server.setdefault(server_state, {})
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn writes answers through self.transport (each request cycle takes it from here).
        self.transport = HeadHoldingTransport(transport, self.loop)  # type: ignore[assignment]
        if len(self.connections) > self.max_connections and not self._close_longest_waiting():
            transport.abort()  # every other connection is being answered
            return
        self._wait_for_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self in self._waiting and self.conn.their_state not in _READING:
            self._stop_waiting()  # the whole request is in (or the connection is done)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state in _READING:
            self._wait_for_request()  # keep-alive: the next request has the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _wait_for_request(self) -> None:
        self._stop_waiting()
        self._waiting[self] = None
        self._deadline = self.loop.call_later(self.request_timeout, self._timed_out)

    def _stop_waiting(self) -> None:
        self._waiting.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        self._close()

    def _close_longest_waiting(self) -> bool:
        for other in self._waiting:
            other._close()
            return True
        return False

    def _close(self) -> None:
        self._waiting.pop(self, None)
        if not self.transport.is_closing():
            # abort, not close: nothing is owed to a client that has not sent its request, and
            # the descriptor is freed at once.
            self.transport.abort()


class HeadHoldingTransport:
    """A transport that holds a final answer's head until the next write (its body), so both
    leave in one send. The head is let go at the latest on the next turn of the event loop,
    so an answer whose body comes later (or never) is not held back; interim answers
    (100 Continue) are never held: the client waits for them before sending its body."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data[:9] == b"HTTP/1.1 " and data[9:10] != b"1" and data.endswith(b"\r\n\r\n"):
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send the held head, if any."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(request_timeout: float, max_connections: int) -> Any:
    """The protocol factory to pass as uvicorn's `http` (picklable, for worker processes)."""
    return partial(
        GuardedH11Protocol, request_timeout=request_timeout, max_connections=max_connections
    )


def accept_batch(max_connections: int) -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one turn of
    the event loop: a quarter of the cap, so that a connection accepted in one burst has read
    its request before the next bursts make it the longest waiting (uvicorn's default, 2048,
    would let one burst close its own first half before they were read)."""
    return max(16, min(2048, max_connections // 4))


def raise_open_file_limit(max_connections: int) -> int:
    """Raise this process's open-file limit (up to the hard limit) to fit `max_connections`
    and the process's own files; return how many connections fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    fits = max(1, min(max_connections, soft - RESERVED_FILES))
    if fits < max_connections:
        log.warning(
            "serving.max_connections is %d, but the open-file limit (ulimit -n %d) fits %d: "
            "at most %d connections are kept open",
            max_connections,
            soft,
            fits,
            fits,
        )
    return fits


def one_blas_thread() -> None:
    """Let NumPy's BLAS run one thread in this process, as each serving process should.

    An answer's forward pass is a few products of matrices at most 32 wide: threads gain
    nothing on them. OpenBLAS nevertheless shares a product of a few hundred rows (the
    challenger's forecasts of one write cycle's answers) among its threads, which then spin
    waiting for more work: that nearly doubled the service's CPU per answer with a challenger
    named (docs/benchmarks.md).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")

"""The guarded protocol sends each answer's head with its body in one write, through uvicorn and
real sockets, without holding back a 100 Continue or a head whose body comes later."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from hhforecast.serving.connections import GuardedH11Protocol, guarded_protocol

from .test_serve_e2e import free_port

WRITES: list[bytes] = []
"""What the server wrote on its sockets, one item per write."""


class RecordingProtocol(GuardedH11Protocol):
    """The guarded protocol, its socket's writes recorded."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        real_write = transport.write

        def write(data: Any) -> None:
            if data:
                WRITES.append(bytes(data))
            real_write(data)

        transport.write = write  # type: ignore[method-assign]
        super().connection_made(transport)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/ answers at once, /late sends its head and its body 0.5 s later, /echo reads a body."""
    if scope["type"] != "http":
        return
    body = b"ok"
    if scope["path"] == "/echo":
        body = (await receive())["body"]
    length = str(len(body)).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
    )
    if scope["path"] == "/late":
        await asyncio.sleep(0.5)
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def url_port() -> Iterator[int]:
    port = free_port()
    factory = guarded_protocol(5.0, 16).keywords
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http=lambda *a, **k: RecordingProtocol(*a, **k, **factory),  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    WRITES.clear()
    yield port
    server.should_exit = True
    thread.join(10)


def request(port: int, text: bytes) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(text)
    return client


def read_until(client: socket.socket, end: bytes, timeout: float) -> bytes:
    client.settimeout(timeout)
    data = b""
    while not data.endswith(end):
        chunk = client.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_an_answer_head_and_body_leave_in_one_write(url_port: int) -> None:
    with request(url_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") as client:
        answer = read_until(client, b"ok", 5)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        # Keep-alive: the second answer on the connection too.
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until(client, b"ok", 5).startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(WRITES) == 2
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"\r\n\r\nok") for w in WRITES)


def test_a_head_whose_body_comes_later_is_sent_at_once(url_port: int) -> None:
    with request(url_port, b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n") as client:
        start = time.monotonic()
        head = read_until(client, b"\r\n\r\n", 5)
        waited = time.monotonic() - start
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert waited < 0.4, f"the head waited {waited:.2f} s for its body"
        assert read_until(client, b"ok", 5) == b"ok"


def test_a_100_continue_is_not_held(url_port: int) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    with request(url_port, head) as client:
        # The client sends its body only once told to continue.
        interim = read_until(client, b"\r\n\r\n", 2)
        assert interim.startswith(b"HTTP/1.1 100 ")
        client.sendall(b"hello")
        answer = read_until(client, b"hello", 5)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")

"""Accepted connections have TCP_NODELAY, in one process and in spawned workers: without it,
Nagle's algorithm holds each response's last segment until the client's delayed ACK (~40 ms).

The server hands its listening socket to uvicorn, which calls ``loop.create_server(sock=...)``;
asyncio sets TCP_NODELAY on accepted connections only for a socket created as TCP. This drives
that same asyncio path on the socket ``lmspec serve`` creates, in this process and after the
socket crossed into a spawned process as the workers receive it."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
from typing import Any

import pytest

from lmspec.serve.server import listening_socket


def accepted_nodelay(sock: socket.socket) -> int:
    """Serve one connection on ``sock`` with asyncio; TCP_NODELAY of the accepted socket."""
    async def main() -> int:
        loop = asyncio.get_running_loop()
        seen: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                accepted = transport.get_extra_info("socket")
                seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Probe, sock=sock)
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        value = await asyncio.wait_for(seen, 30)
        writer.close()
        server.close()
        return value

    return asyncio.run(main())


def _child(sock: socket.socket, out: Any) -> None:
    out.put(accepted_nodelay(sock))


def test_one_process() -> None:
    assert accepted_nodelay(listening_socket("127.0.0.1", 0)) != 0


@pytest.mark.integration
def test_spawned_workers() -> None:
    ctx = multiprocessing.get_context("spawn")
    sock = listening_socket("127.0.0.1", 0)
    out = ctx.Queue()
    proc = ctx.Process(target=_child, args=(sock, out))
    proc.start()
    try:
        assert out.get(timeout=120) != 0
    finally:
        proc.join(60)
        sock.close()

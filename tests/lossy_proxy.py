"""A TCP proxy in front of PostgreSQL that loses one answer: after the client prepares a statement
whose SQL contains a marker, the proxy forwards the statement's execution to PostgreSQL, lets it
answer (it has committed, outside a transaction), then cuts the connection without relaying the reply.
The client sees its connection die mid-statement although the work is done: the ambiguous commit."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from tests.live import listening


@dataclass
class LossyProxy:
    marker: bytes
    upstream_url: str
    port: int = 0
    answers_lost: int = 0
    _armed: bool = field(default=True, repr=False)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        url = make_url(self.upstream_url)
        socket_dir = url.query.get("host")
        if isinstance(socket_dir, str):  # the embedded PostgreSQL listens on a Unix socket only
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{url.port or 5432}")
        return await asyncio.open_connection(url.host or "127.0.0.1", url.port or 5432)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await self._open_upstream()
        withheld, answered, cut = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def client_to_server() -> None:
            marked: bytes | None = None  # the name asyncpg prepared the marked statement under
            while data := await client_reader.read(65536):
                # Its execution: Bind ('B', length, an empty portal name, the statement's name), Execute, Sync.
                if marked is not None and data[:1] == b"B" and data[6:].startswith(marked + b"\x00"):
                    withheld.set()
                    server_writer.write(data)
                    await server_writer.drain()
                    await asyncio.wait_for(answered.wait(), 10)  # PostgreSQL ran and committed it
                    self.answers_lost += 1
                    cut.set()
                    return
                server_writer.write(data)
                await server_writer.drain()
                if self._armed and data[:1] == b"P" and self.marker in data:  # its Parse ('P', length, name)
                    self._armed, marked = False, data[5 : data.index(b"\x00", 5)]

        async def server_to_client() -> None:
            while data := await server_reader.read(65536):
                if withheld.is_set():  # the reply to the marked statement is dropped
                    if b"Z\x00\x00\x00\x05" in data:  # ReadyForQuery: done (and, outside a transaction, committed)
                        answered.set()
                    continue
                client_writer.write(data)
                await client_writer.drain()

        tasks = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        cutting = asyncio.create_task(cut.wait())
        await asyncio.wait([*tasks, cutting], return_when=asyncio.FIRST_COMPLETED)
        for task in [*tasks, cutting]:
            task.cancel()
        for writer in (client_writer, server_writer):
            writer.transport.abort()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, cutting)


@asynccontextmanager
async def lossy_proxy(upstream_url: str, marker: bytes) -> AsyncIterator[LossyProxy]:
    """A proxy on a free loopback port; its `port` is set once it listens."""
    proxy = LossyProxy(marker, upstream_url)
    async with listening(proxy._serve) as port:
        proxy.port = port
        yield proxy

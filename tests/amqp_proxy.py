"""A TCP proxy in front of RabbitMQ that the test can cut and restore: cut, it aborts every open
connection (the broker seems to die mid-conversation) and closes each new one at once (a broker that
is down); restored, it relays again. It counts what it saw, so a test can wait for the client to
have connected, or to have tried again while the broker was away."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from tests.live import listening


@dataclass
class AmqpProxy:
    upstream_host: str
    upstream_port: int
    port: int = 0
    accepted: int = 0  # connections relayed to the broker
    refused: int = 0  # connections closed at once because the proxy was cut
    # Seconds each chunk from the broker is held back: a slow broker (its confirms come late).
    reply_delay: float = 0.0
    _up: bool = field(default=True, repr=False)
    # Each relayed connection: its client's and its broker's side.
    _links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(default_factory=set, repr=False)

    @property
    def open_connections(self) -> int:
        """Client connections currently relayed to the broker."""
        return len(self._links)

    def cut(self) -> None:
        self._up = False
        for link in self._links:
            for writer in link:
                writer.transport.abort()

    def restore(self) -> None:
        self._up = True

    def url_for(self, broker_url: str) -> str:
        """`broker_url` (credentials, vhost) pointed at this proxy instead."""
        parts = urlsplit(broker_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self._up:
            self.refused += 1
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        if not self._up:  # cut while connecting
            self.refused += 1
            for writer in (client_writer, server_writer):
                writer.transport.abort()
            return
        self.accepted += 1
        link = (client_writer, server_writer)
        self._links.add(link)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: bool) -> None:
            while data := await reader.read(65536):
                if delay and self.reply_delay:
                    await asyncio.sleep(self.reply_delay)
                writer.write(data)
                await writer.drain()

        tasks = [
            asyncio.create_task(pipe(client_reader, server_writer, False)),
            asyncio.create_task(pipe(server_reader, client_writer, True)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            self._links.discard(link)
            for writer in link:
                writer.transport.abort()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks)


@asynccontextmanager
async def amqp_proxy(broker_url: str) -> AsyncIterator[AmqpProxy]:
    """A proxy to the broker of `broker_url` on a free loopback port (its `port` is set once it
    listens); `proxy.url_for(broker_url)` is the URL to give the client."""
    parts = urlsplit(broker_url)
    proxy = AmqpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    async with listening(proxy._serve) as port:
        proxy.port = port
        try:
            yield proxy
        finally:
            proxy.cut()  # the relayed connections end too

"""The relay: publishes the outbox's events to RabbitMQ, in commit order, at least once.

    python -m app.relay          (or `make relay`; also inside the API with EVENTS_RELAY_IN_PROCESS)

Each round, in one transaction holding an advisory lock (so one relay publishes at a time, however
many run), it reads the oldest positioned, unpublished events, publishes each to the durable topic
exchange EVENTS_EXCHANGE (routing key: the event type; persistent; message_id: the event id) and
waits for the broker's confirm, then marks the confirmed ones published and commits. A relay that
dies mid-round marks nothing, so the next one publishes the round again: events arrive at least
once, and consumers dedupe by id (docs/events.md). Broker or database trouble: the relay retries
with backoff; the API never waits for it."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange
from prometheus_client import start_http_server

from app.core.config import Settings, get_settings
from app.core.database import Database, UnitOfWork
from app.core.logging import configure_logging
from app.core.metrics import EVENT_PUBLISH_FAILURES, EVENTS_OLDEST_UNPUBLISHED, EVENTS_PUBLISHED, REGISTRY
from app.repositories.events import Events
from app.services.events import encode, render

logger = logging.getLogger("app.relay")  # also when run as __main__

PUBLISH_TIMEOUT_SECONDS = 10.0
# One round's database deadline: its transaction holds the publish lock while the broker confirms.
ROUND_SECONDS = 30.0
# A round stops sending once this much of it has passed, so that even a last publish that takes its
# whole timeout leaves time to mark what was confirmed and commit: with a slow broker a round
# publishes fewer events, never none (and never re-sends a batch for ever).
SENDING_SECONDS = ROUND_SECONDS - 2 * PUBLISH_TIMEOUT_SECONDS
MAX_BACKOFF_SECONDS = 30.0


class Relay:
    def __init__(self, database: Database, settings: Settings) -> None:
        if settings.events_broker_url is None:
            raise ValueError("EVENTS_BROKER_URL is not set: there is no broker to relay events to")
        self.database = database
        self.settings = settings
        self.broker_url = settings.events_broker_url.get_secret_value()

    async def run(self) -> None:
        """Relay until cancelled, reconnecting with backoff after any failure."""
        backoff = 0.5
        while True:
            try:
                async with self._exchange() as exchange:
                    logger.info("relay connected to the broker")
                    backoff = 0.5
                    while True:
                        if await self.publish_round(exchange) < self.settings.events_relay_batch_size:
                            await asyncio.sleep(self.settings.events_relay_poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # broker or database away: retry, the events wait in the outbox
                EVENT_PUBLISH_FAILURES.inc()
                logger.warning("relay: %r; retrying in %.1f s", error, backoff)
                await self._measure_lag()  # the backlog grows while the broker is away: say so
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    @contextlib.asynccontextmanager
    async def _exchange(self) -> AsyncIterator[AbstractExchange]:
        connection = await aio_pika.connect(self.broker_url, timeout=PUBLISH_TIMEOUT_SECONDS)
        try:
            channel = await connection.channel(publisher_confirms=True)
            yield await channel.declare_exchange(
                self.settings.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
        finally:
            await connection.close()

    def _unit_of_work(self) -> UnitOfWork:
        deadline = asyncio.get_running_loop().time() + ROUND_SECONDS
        return UnitOfWork(self.database, gated=False, deadline=deadline)

    async def publish_round(self, exchange: AbstractExchange) -> int:
        """Publish one batch; how many were published (0 also when another relay is publishing)."""
        events = Events(self._unit_of_work())
        await events.position_new()
        published, failure = await self._publish_batch(events, exchange)
        await self._measure_lag()
        if failure is not None:
            raise failure
        return published

    async def _publish_batch(self, events: Events, exchange: AbstractExchange) -> tuple[int, Exception | None]:
        """In one transaction holding the publish lock: publish the oldest unpublished events, each
        confirmed, until the batch or the round's sending time ends or the broker fails; mark the
        confirmed ones published. How many, and the broker's failure if any."""
        published: list[int] = []
        failure: Exception | None = None
        loop = asyncio.get_running_loop()
        stop_sending = loop.time() + SENDING_SECONDS
        async with events.uow.transaction():
            if not await events.try_publish_lock(idle_timeout_seconds=ROUND_SECONDS):  # another relay publishes
                return 0, None
            for row in await events.unpublished(self.settings.events_relay_batch_size):
                if loop.time() > stop_sending:
                    break
                try:
                    # Not mandatory: RabbitMQ drops an event no queue is bound for (bind queues first).
                    await exchange.publish(
                        self._message(row), routing_key=row["type"], mandatory=False, timeout=PUBLISH_TIMEOUT_SECONDS
                    )
                except Exception as error:  # mark what was confirmed, then let run() back off
                    failure = error
                    break
                published.append(row["id"])
                EVENTS_PUBLISHED.labels(row["type"]).inc()
            if published:
                await events.mark_published(published)
        return len(published), failure

    async def _measure_lag(self) -> None:
        """The age of the oldest unpublished event, for the alert (also while the broker is away)."""
        try:
            EVENTS_OLDEST_UNPUBLISHED.set(await Events(self._unit_of_work()).oldest_unpublished_age())
        except Exception:  # the database is away too: the next round measures again
            logger.debug("relay: could not measure the outbox's lag", exc_info=True)

    def _message(self, row: dict[str, Any]) -> aio_pika.Message:
        event = render(row, self.settings.events_source)
        return aio_pika.Message(
            encode(event),
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event.id,
            type=event.type,
            timestamp=event.time,
        )


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    if settings.events_relay_metrics_port:
        start_http_server(settings.events_relay_metrics_port, registry=REGISTRY)
    database = await Database.connect(settings)
    relay = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for stop in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop, relay.cancel if relay else lambda: None)
    try:
        await Relay(database, settings).run()
    except asyncio.CancelledError:
        logger.info("relay stopped")
    finally:
        await database.close()


if __name__ == "__main__":
    asyncio.run(main())

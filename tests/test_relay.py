"""The relay end to end, on real PostgreSQL and a real RabbitMQ (EVENTS_TEST_BROKER_URL, else the
local one): events written while the broker is down wait in the outbox and are published once it is
back; a relay killed mid-batch loses nothing (the batch is published again: duplicates, deduped by
id); two relays at once keep each payment's events in order; an event whose transaction commits
after a later one's is still published and listed after the cursor already given out; and the
example consumer prints what the service publishes.

Each test binds a queue of its own to an exchange of its own (unique names, deleted afterwards),
so runs on one broker do not see each other's events."""

import asyncio
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

import tests
from app.core.config import Settings
from app.core.security import create_access_token
from tests import TEST_SECRET, databases
from tests.amqp_proxy import AmqpProxy, amqp_proxy
from tests.live import PROJECT_ROOT, LiveServer, free_port, uvicorn_servers

pytestmark = pytest.mark.slow

BROKER_URL = os.environ.get("EVENTS_TEST_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672/"
PAYMENTS = "/api/v1/payments/"
EVENTS = "/api/v1/events"
WAIT = 30.0  # the bound of every wait for events to arrive or be marked published
USER, SERVICE, ADMIN = 1, 2, 3


def report(message: str) -> None:
    """What a run observed that is allowed but worth knowing (duplicates): shown with -s."""
    print(f"\n[test_relay] {message}", file=sys.stderr)


# --- the broker, the database, the servers -----------------------------------------------------------


def broker_address(url: str) -> str:
    parts = urlsplit(url)
    return f"amqp://{parts.hostname}:{parts.port or 5672}{parts.path}"


@pytest.fixture(scope="module")
async def broker() -> str:
    try:
        async with asyncio.timeout(5):
            connection = await aio_pika.connect(BROKER_URL)
            await connection.close()
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as error:
        tests.require(
            False,
            f"no RabbitMQ at {broker_address(BROKER_URL)} ({type(error).__name__}: {error}); "
            "start one or set EVENTS_TEST_BROKER_URL",
        )
    return BROKER_URL


@pytest.fixture(scope="module")
def database_url(broker: str, server_url: str) -> Iterator[str]:
    with databases.migrated_database(server_url, "relay") as url:
        yield url


def server_env(database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "ENVIRONMENT": "test",
        "USER_WRITE_LIMIT_PER_MINUTE": "0",
        # Hundreds of requests at once on a small machine, besides the relays' own work.
        "DB_REQUEST_TIMEOUT_SECONDS": "15",
        "DB_STATEMENT_TIMEOUT_SECONDS": "15",
        "DB_POOL_TIMEOUT_SECONDS": "15",
    }


@pytest.fixture(scope="module")
def servers(database_url: str) -> Iterator[list[str]]:
    """Two API processes without a relay of their own."""
    with uvicorn_servers(2, server_env(database_url)) as live:
        yield [server.url for server in live]


@asynccontextmanager
async def server_in_thread(env: dict[str, str]) -> AsyncIterator[LiveServer]:
    """One API process, started and stopped in a thread: this loop (the proxy's) runs meanwhile."""
    servers = uvicorn_servers(1, env)
    (server,) = await asyncio.to_thread(servers.__enter__)
    try:
        yield server
    finally:
        await asyncio.to_thread(servers.__exit__, None, None, None)


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[Any]:
    """The test's own connection to the test database, which it finds empty."""
    connection = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        await connection.execute("TRUNCATE payments, events CASCADE")
        yield connection
    finally:
        await connection.close()


def headers(user_id: int = USER, *, role: str | None = None) -> dict[str, str]:
    """A bearer token of an end user, or with `role` ("service", "admin") of that role."""
    settings = Settings(secret_key=TEST_SECRET, _env_file=None)
    return {"Authorization": f"Bearer {create_access_token(user_id, settings, roles=[role] if role else [])}"}


def unique_name(purpose: str) -> str:
    return f"test-relay-{purpose}-{uuid.uuid4().hex[:12]}"


# --- waiting -----------------------------------------------------------------------------------------


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = WAIT) -> None:
    """Poll `check` until it holds; an AssertionError naming `what` after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                holds = check()
                if await holds if inspect.isawaitable(holds) else holds:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


# --- the consumer ------------------------------------------------------------------------------------


@dataclass
class Delivery:
    event: dict[str, Any]
    routing_key: str | None
    message_id: str | None
    content_type: str | None
    persistent: bool


@dataclass
class Consumer:
    """Everything the broker delivered to the test's queue, in arrival order."""

    exchange: str
    deliveries: list[Delivery] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def _receive(self, message: AbstractIncomingMessage) -> None:
        self.deliveries.append(
            Delivery(
                json.loads(message.body),
                message.routing_key,
                message.message_id,
                message.content_type,
                message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT,
            )
        )
        self._arrived.set()

    def distinct(self) -> dict[str, dict[str, Any]]:
        """Each event once (its first delivery), by id, in arrival order."""
        events: dict[str, dict[str, Any]] = {}
        for delivery in self.deliveries:
            events.setdefault(delivery.event["id"], delivery.event)
        return events

    def duplicates(self) -> int:
        return len(self.deliveries) - len(self.distinct())

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        """Wait for deliveries until `condition` holds (checked after each)."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"not within {timeout} s: {what} ({len(self.distinct())} distinct events, "
                f"{len(self.deliveries)} deliveries)"
            ) from None

    async def until_count(self, count: int, timeout: float = WAIT) -> None:
        await self.until(lambda: len(self.distinct()) >= count, f"{count} distinct events", timeout)


@asynccontextmanager
async def broker_names(broker_url: str, purpose: str) -> AsyncIterator[tuple[aio_pika.abc.AbstractChannel, str]]:
    """A channel and a unique name for the test's exchange and queue, both deleted afterwards."""
    name = unique_name(purpose)
    connection = await aio_pika.connect(broker_url)
    try:
        channel = await connection.channel()
        try:
            yield channel, name
        finally:
            async with asyncio.timeout(10):
                await channel.queue_delete(name)
                await channel.exchange_delete(name)
    finally:
        await connection.close()


@asynccontextmanager
async def consumer(broker_url: str, purpose: str) -> AsyncIterator[Consumer]:
    """A queue bound to every event of a new exchange (declared as the relay declares it), consumed
    into a Consumer; the queue is bound before any relay publishes, so nothing is dropped unrouted."""
    async with broker_names(broker_url, purpose) as (channel, name):
        await channel.set_qos(prefetch_count=1000)
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(name, exclusive=True)
        await queue.bind(exchange, routing_key="#")
        found = Consumer(name)

        async def receive(message: AbstractIncomingMessage) -> None:
            found._receive(message)
            await message.ack()

        tag = await queue.consume(receive)
        try:
            yield found
        finally:
            with suppress(Exception):
                await queue.cancel(tag)


# --- the relay ---------------------------------------------------------------------------------------


@dataclass
class RelayProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: no chance to finish its round or mark anything."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def relay(database_url: str, broker_url: str, exchange: str, **settings: str) -> Iterator[RelayProcess]:
    """`python -m app.relay`, standalone; killed afterwards if still running."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "ENVIRONMENT": "test",
        "EVENTS_BROKER_URL": broker_url,
        "EVENTS_EXCHANGE": exchange,
        "EVENTS_RELAY_METRICS_PORT": "0",
        "EVENTS_RELAY_POLL_SECONDS": "0.05",
        **settings,
    }
    log = tempfile.NamedTemporaryFile(prefix="relay-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "app.relay"], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield RelayProcess(process, Path(log.name))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()


def published_counts(metrics_port: int) -> int:
    """events_published_total of a relay, summed over the types."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "events_published_total"
        )
    )


# --- the API -----------------------------------------------------------------------------------------


def new_payment(tag: str, **fields: Any) -> dict[str, Any]:
    return {"payment_id": f"pi_{tag}", "provider": "stripe", "currency": "USD", "amount_total": "10.00", **fields}


async def create_payments(
    servers: list[str], count: int, tag: str, *, role: str | None = None, concurrency: int = 16
) -> list[dict[str, Any]]:
    """`count` payments created through the servers in turn, `concurrency` at a time; each a 201."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30) as client:

        async def create(n: int) -> dict[str, Any]:
            async with gate:
                response = await client.post(
                    servers[n % len(servers)] + PAYMENTS,
                    json=new_payment(f"{tag}_{n}"),
                    headers=headers(SERVICE if role else USER, role=role),
                )
            assert response.status_code == 201, response.text
            body: dict[str, Any] = response.json()
            return body

        return list(await asyncio.gather(*(create(n) for n in range(count))))


async def table_events(pg: Any) -> dict[str, Any]:
    """The events table: event id (as published) -> row."""
    rows = await pg.fetch("SELECT id, event_id, type, payment_id, position, published_at FROM events ORDER BY id")
    return {str(row["event_id"]): row for row in rows}


async def unpublished(pg: Any) -> int:
    return int(await pg.fetchval("SELECT count(*) FROM events WHERE published_at IS NULL"))


async def all_published(pg: Any) -> bool:
    return await unpublished(pg) == 0


def check_messages(found: Consumer) -> None:
    """How the relay publishes each event: persistent, routed by its type, the CloudEvents id as the
    message id."""
    for delivery in found.deliveries:
        event = delivery.event
        assert delivery.routing_key == event["type"], event
        assert delivery.message_id == event["id"], event
        assert delivery.content_type == "application/cloudevents+json", delivery
        assert delivery.persistent, event
        assert event["specversion"] == "1.0" and event["subject"] == f"payments/{event['data']['object']['id']}"


# --- the tests ---------------------------------------------------------------------------------------


async def test_events_written_while_the_broker_is_down_are_published_once_it_is_back(
    broker: str, database_url: str, pg: Any
) -> None:
    """The relay runs inside the API process (EVENTS_RELAY_IN_PROCESS) and reaches the broker through
    a proxy. The proxy is cut (the relay's connection dies, new ones are refused) while 200 payments
    are created: each is a 201 and /health/ready stays 200, the events wait in the outbox (none
    marked published) and the relay retries with backoff. Restored, all 200 arrive."""
    async with consumer(broker, "down") as found, amqp_proxy(broker) as proxy:
        env = {
            **server_env(database_url),
            "EVENTS_BROKER_URL": proxy.url_for(broker),
            "EVENTS_EXCHANGE": found.exchange,
            "EVENTS_RELAY_IN_PROCESS": "true",
            "EVENTS_RELAY_POLL_SECONDS": "0.05",
        }
        async with server_in_thread(env) as server:
            await broker_down_while_creating(server, proxy, found, pg)


async def broker_down_while_creating(server: LiveServer, proxy: AmqpProxy, found: Consumer, pg: Any) -> None:
    """The outage, once the server and its relay run: cut, create and probe, restore, check."""
    await eventually(lambda: proxy.open_connections >= 1, "the relay connected")

    proxy.cut()
    loop = asyncio.get_running_loop()
    ready: list[int] = []
    done = asyncio.Event()

    async def probe_readiness() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while not done.is_set():
                ready.append((await client.get(server.url + "/health/ready")).status_code)
                await asyncio.sleep(0.05)

    probing = asyncio.create_task(probe_readiness())
    try:
        outage_started = loop.time()
        created = await create_payments([server.url], 200, "down")
        # The relay found the broker gone with the first event, and has since tried again (and again).
        await eventually(lambda: proxy.refused >= 2, "the relay tried to reconnect")
    finally:
        done.set()
        await probing
    outage = loop.time() - outage_started
    assert ready and set(ready) == {200}, ready
    assert not found.deliveries
    assert await unpublished(pg) == 200  # nothing is marked published while the broker is away
    # Backoff, not a busy loop: attempts at least half a second apart.
    assert proxy.refused <= 2 + outage / 0.5, (proxy.refused, outage)

    restored_at = await pg.fetchval("SELECT now()")
    proxy.restore()
    await found.until_count(200)
    await eventually(lambda: all_published(pg), "every event marked published")

    table = await table_events(pg)
    assert set(found.distinct()) == set(table)
    assert {event["type"] for event in found.distinct().values()} == {"payment.created"}
    assert {event["subject"] for event in found.distinct().values()} == {f"payments/{p['id']}" for p in created}
    assert all(row["published_at"] >= restored_at for row in table.values())
    check_messages(found)
    report(
        f"broker down: {len(created)} events, {proxy.refused} reconnections refused in {outage:.1f} s, "
        f"{found.duplicates()} duplicate deliveries"
    )


async def test_a_relay_killed_mid_batch_loses_nothing(
    broker: str, database_url: str, servers: list[str], pg: Any
) -> None:
    """500 events wait; a relay publishing them 50 a round is SIGKILLed in its third round; a new
    relay publishes the rest. Every event arrives; the only duplicates are of events the killed
    relay had published but not yet marked (at most one round's): none it had marked comes again."""
    await create_payments(servers, 500, "kill")
    async with consumer(broker, "kill") as found, amqp_proxy(broker) as slow:
        # Through a broker whose confirms take 20 ms, a round of 50 takes a second: the relay is
        # surely still publishing when the test sees its third round begin (however slowly the
        # consumer receives), and it cannot have finished all 500.
        slow.reply_delay = 0.02
        with relay(database_url, slow.url_for(broker), found.exchange, EVENTS_RELAY_BATCH_SIZE="50") as first:
            # Killed in its third round: two rounds are published and marked, the third under way.
            await found.until(lambda: len(found.deliveries) > 100, "the third round begun")
            first.kill()
        arrived_before = len(found.distinct())
        marked = await pg.fetch("SELECT event_id FROM events WHERE published_at IS NOT NULL")
        marked_before = {str(row["event_id"]) for row in marked}
        assert arrived_before < 500 and await unpublished(pg) > 0, "the relay finished before it was killed"
        assert len(marked_before) >= 100 and len(marked_before) % 50 == 0, len(marked_before)
        started = asyncio.get_running_loop().time()

        with relay(database_url, broker, found.exchange, EVENTS_RELAY_BATCH_SIZE="50") as second:
            await found.until_count(500)
            took = asyncio.get_running_loop().time() - started
            await eventually(lambda: all_published(pg), "every event marked published")
            assert second.process.poll() is None, second.log()

    table = await table_events(pg)
    assert set(found.distinct()) == set(table)
    deliveries = Counter(delivery.event["id"] for delivery in found.deliveries)
    redelivered = {event_id for event_id, times in deliveries.items() if times > 1}
    assert not redelivered & marked_before, "an event marked published was published again"
    assert found.duplicates() <= 50
    check_messages(found)
    report(
        f"relay killed: {arrived_before} of 500 events had arrived, {len(marked_before)} were marked; "
        f"{found.duplicates()} duplicate deliveries after the restart (which published the rest in {took:.1f} s)"
    )


async def test_two_relays_keep_each_payment_s_events_in_order(
    broker: str, database_url: str, servers: list[str], pg: Any
) -> None:
    """Two relays run while 20 payments each move 25 times between failed and pending (sequentially
    per payment, concurrently across payments, through both API processes). One relay publishes at a
    time: each payment's events arrive in the order of its versions, all events in position order."""
    async with consumer(broker, "two") as found:
        ports = [free_port(), free_port()]
        with (
            relay(database_url, broker, found.exchange, EVENTS_RELAY_METRICS_PORT=str(ports[0])) as one,
            relay(database_url, broker, found.exchange, EVENTS_RELAY_METRICS_PORT=str(ports[1])) as two,
        ):
            created = await create_payments(servers, 20, "two", role="service")
            versions: dict[int, list[int]] = {payment["id"]: [payment["version"]] for payment in created}

            async with httpx.AsyncClient(timeout=30) as client:

                async def move(payment_id: int) -> None:
                    for n in range(25):
                        response = await client.patch(
                            f"{servers[n % 2]}{PAYMENTS}{payment_id}/status",
                            json={"payment_status": "failed" if n % 2 == 0 else "pending"},
                            headers=headers(SERVICE, role="service"),
                        )
                        assert response.status_code == 200, response.text
                        versions[payment_id].append(response.json()["version"])

                await asyncio.gather(*(move(payment_id) for payment_id in versions))

            await found.until_count(520)
            await eventually(lambda: all_published(pg), "every event marked published")
            assert one.process.poll() is None and two.process.poll() is None, one.log() + two.log()
            published = [await asyncio.to_thread(published_counts, port) for port in ports]

    events = list(found.distinct().values())
    assert set(found.distinct()) == set(await table_events(pg))
    arrived: dict[int, list[int]] = defaultdict(list)
    for event in events:
        arrived[event["data"]["object"]["id"]].append(event["data"]["object"]["version"])
    assert arrived == versions
    positions = [event["position"] for event in events]
    assert positions == sorted(positions) and len(set(positions)) == 520
    assert sum(published) == len(found.deliveries), published
    assert found.duplicates() == 0, "two healthy relays published an event twice: the publish lock did not hold"
    check_messages(found)
    report(f"two relays: published {published[0]} + {published[1]}, {found.duplicates()} duplicate deliveries")


async def test_an_event_committed_late_is_still_published_and_listed_after_the_cursor(
    broker: str, database_url: str, servers: list[str], pg: Any
) -> None:
    """A transaction takes an event id, then waits; a later change's event (higher id) commits and is
    published and listed, and the list's cursor moves past it. When the first commits, its event is
    published too, and listed after that cursor: neither the relay nor a consumer polling with its
    cursor skips an event that committed late."""
    admin = headers(ADMIN, role="admin")
    async with consumer(broker, "late") as found, httpx.AsyncClient(timeout=30) as client:

        async def listed(cursor: int | None) -> tuple[list[dict[str, Any]], int | None]:
            """Every event after `cursor`, page by page; and the last next_cursor."""
            items: list[dict[str, Any]] = []
            while True:
                params = {"size": 100} | ({"cursor": cursor} if cursor is not None else {})
                response = await client.get(servers[1] + EVENTS, params=params, headers=admin)
                assert response.status_code == 200, response.text
                page = response.json()
                if not page["items"]:
                    return items, page["next_cursor"]
                items += page["items"]
                cursor = page["next_cursor"]

        def arrived(event_id: str) -> Callable[[], bool]:
            return lambda: event_id in found.distinct()

        with relay(database_url, broker, found.exchange):
            (first,) = await create_payments(servers, 1, "late_first")
            created = await pg.fetchval("SELECT event_id FROM events WHERE payment_id = $1", first["id"])
            await found.until(arrived(str(created)), "the first payment's event")

            holder = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
            try:
                transaction = holder.transaction()
                await transaction.start()
                held = await holder.fetchrow(
                    "INSERT INTO events (type, payment_id, snapshot, actor) "
                    "SELECT 'payment.updated', id, row_to_json(payments)::text, 'test' FROM payments WHERE id = $1 "
                    "RETURNING id, event_id",
                    first["id"],
                )
                held_id = str(held["event_id"])
                (later_payment,) = await create_payments(servers, 1, "late_later")
                later = await pg.fetchrow("SELECT id, event_id FROM events WHERE payment_id = $1", later_payment["id"])
                later_id = str(later["event_id"])
                assert later["id"] > held["id"]

                await found.until(arrived(later_id), "the later event")
                items, cursor = await listed(None)
                assert later_id in {item["id"] for item in items} and held_id not in {item["id"] for item in items}
                assert cursor is not None
                assert await listed(cursor) == ([], cursor)
                assert held_id not in found.distinct()

                await transaction.commit()
            finally:
                await holder.close()

            await found.until(arrived(held_id), "the event committed late")
            after, _ = await listed(cursor)
            assert [item["id"] for item in after] == [held_id]
            assert after[0]["position"] > cursor
            await eventually(lambda: all_published(pg), "every event marked published")

    assert set(found.distinct()) == set(await table_events(pg))
    assert found.distinct()[held_id]["type"] == "payment.updated"
    check_messages(found)
    report(f"late commit: {found.duplicates()} duplicate deliveries")


async def test_the_example_consumer_prints_each_event(
    broker: str, database_url: str, servers: list[str], pg: Any
) -> None:
    """examples/consume_events.py with MAX_EVENTS=N, against the servers and a relay: it prints the N
    payment.created events and exits 0; the relay stops cleanly on SIGTERM."""
    count = 5
    async with broker_names(broker, "example") as (_, name):
        env = {**os.environ, "BROKER_URL": broker, "EXCHANGE": name, "QUEUE": name, "MAX_EVENTS": str(count)}
        example = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PROJECT_ROOT / "examples" / "consume_events.py"),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            assert example.stdout is not None
            async with asyncio.timeout(WAIT):
                bound = (await example.stdout.readline()).decode()
            assert bound.startswith(f"bound {name} to {name}"), bound
            with relay(database_url, broker, name) as running:
                created = await create_payments(servers, count, "example")
                async with asyncio.timeout(WAIT):
                    output = (await example.stdout.read()).decode()
                    code = await example.wait()
                running.process.terminate()
                assert await asyncio.to_thread(running.process.wait, 10) == 0, running.log()
        finally:
            if example.returncode is None:
                example.kill()
                await example.wait()
    assert code == 0, output
    printed = re.findall(r"^payment\.created payments/(\d+) id=\S+ version=1 actor=user:1$", output, re.MULTILINE)
    assert sorted(map(int, printed)) == sorted(payment["id"] for payment in created), output

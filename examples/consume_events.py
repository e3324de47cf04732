"""Print the service's events as they arrive from RabbitMQ, each once.

    .venv/bin/python examples/consume_events.py

BROKER_URL  RabbitMQ (default amqp://guest:guest@127.0.0.1:5672/)
EXCHANGE    the service's EVENTS_EXCHANGE (default payments)
QUEUE       a durable queue to bind (default payment-events-example); it keeps events while this
            consumer is away
BINDING     the routing keys to bind, a topic pattern (default `#`: every event; e.g. `payment.*`)
MAX_EVENTS  stop after this many distinct events (default: never)

The relay publishes at least once, so an event may arrive twice (after a relay restart): a consumer
dedupes by the event id. This one keeps the ids it has seen in memory; a real consumer stores them
with the effect of the event, in the same transaction. Events of one payment arrive in the order
their changes committed; `data.object.version` lets a consumer drop anything older than what it has.
"""

import asyncio
import json
import os
import sys

import aio_pika

BROKER_URL = os.environ.get("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
EXCHANGE = os.environ.get("EXCHANGE", "payments")
QUEUE = os.environ.get("QUEUE", "payment-events-example")
BINDING = os.environ.get("BINDING", "#")


async def consume(max_events: int | None) -> int:
    seen: set[str] = set()
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(QUEUE, durable=True)
        await queue.bind(exchange, routing_key=BINDING)
        print(f"bound {QUEUE} to {EXCHANGE} ({BINDING}); waiting for events", flush=True)
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():  # acknowledged once handled
                    event = json.loads(message.body)
                    if event["id"] in seen:
                        print(f"duplicate {event['id']} ignored", flush=True)
                        continue
                    seen.add(event["id"])
                    payment = event["data"]["object"]
                    print(
                        f"{event['type']} {event['subject']} id={event['id']} "
                        f"version={payment.get('version')} actor={event['data']['actor']}",
                        flush=True,
                    )
                if max_events is not None and len(seen) >= max_events:
                    break
    return len(seen)


def main() -> int:
    limit = os.environ.get("MAX_EVENTS")
    try:
        asyncio.run(consume(int(limit) if limit else None))
    except KeyboardInterrupt:
        pass
    except (OSError, aio_pika.exceptions.AMQPError) as error:
        print(f"cannot consume from {BROKER_URL}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

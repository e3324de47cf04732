"""Prometheus metrics, in a registry of their own. Per process: with several uvicorn workers, each
worker has its own numbers (scrape each, or run one worker per container as deploy/ does)."""

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one request and its latency. The labelled children are looked up once per label
    combination: labels() takes a lock and builds a key on every call, on every request."""
    children = _REQUEST_CHILDREN.get((method, route, status))
    if children is None:
        children = (HTTP_REQUESTS.labels(method, route, str(status)), HTTP_LATENCY.labels(method, route))
        if len(_REQUEST_CHILDREN) < 10_000:  # label values a client can vary (the method) stay bounded
            _REQUEST_CHILDREN[(method, route, status)] = children
    children[0].inc()
    children[1].observe(seconds)


PAYMENTS_CREATED = Counter(
    "payments_created_total", "Payments created, by provider and currency", ["provider", "currency"], registry=REGISTRY
)
STATUS_TRANSITIONS = Counter(
    "payment_status_transitions_total", "Payment status changes", ["from_status", "to_status"], registry=REGISTRY
)
WEBHOOK_EVENTS = Counter(
    "webhook_events_total", "Provider webhook events by outcome", ["provider", "outcome"], registry=REGISTRY
)
EVENTS_WRITTEN = Counter(
    "events_written_total",
    "Events written to the outbox by this process, by type (counted when written, before the commit)",
    ["type"],
    registry=REGISTRY,
)
EVENTS_PUBLISHED = Counter(
    "events_published_total", "Events the broker confirmed, by type", ["type"], registry=REGISTRY
)
EVENT_PUBLISH_FAILURES = Counter(
    "event_publish_failures_total", "Failed attempts to publish a batch of events", registry=REGISTRY
)
EVENTS_OLDEST_UNPUBLISHED = Gauge(
    "events_oldest_unpublished_age_seconds",
    "Age of the oldest event not yet published, as the relay last saw it (0: none)",
    registry=REGISTRY,
)
REFUNDS = Counter(
    "refunds_total",
    "Refunds by the status they reached (pending when recorded) and currency",
    ["status", "currency"],
    registry=REGISTRY,
)


class PoolCollector(Collector):
    """Database pool usage, read at scrape time from whichever pool the app currently has."""

    def __init__(self) -> None:
        self.usage: Callable[[], tuple[int, int, int, int] | None] = lambda: None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        usage = self.usage()
        if usage is None:
            return
        opened, in_use, most, waiting = usage
        for name, documentation, value in (
            ("db_pool_size", "Connections open", opened),
            ("db_pool_checked_out", "Connections in use", in_use),
            ("db_pool_idle", "Idle open connections", opened - in_use),
            ("db_pool_max", "Most connections the pool may open (DB_POOL_SIZE + DB_MAX_OVERFLOW)", most),
            ("db_gate_waiting", "Requests waiting for a connection (at most DB_POOL_TIMEOUT_SECONDS)", waiting),
        ):
            yield GaugeMetricFamily(name, documentation, value=value)


POOL = PoolCollector()
REGISTRY.register(POOL)

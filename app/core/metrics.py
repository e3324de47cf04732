"""Prometheus metrics, in a registry of their own. Per process: with several uvicorn workers, each
worker has its own numbers (scrape each, or run one worker per container as deploy/ does)."""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.pool import QueuePool

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
PAYMENTS_CREATED = Counter(
    "payments_created_total", "Payments created, by provider and currency", ["provider", "currency"], registry=REGISTRY
)
STATUS_TRANSITIONS = Counter(
    "payment_status_transitions_total", "Payment status changes", ["from_status", "to_status"], registry=REGISTRY
)
WEBHOOK_EVENTS = Counter(
    "webhook_events_total", "Provider webhook events by outcome", ["provider", "outcome"], registry=REGISTRY
)


class PoolCollector(Collector):
    """Database pool usage, read at scrape time from whichever pool the app currently has."""

    def __init__(self) -> None:
        self.pool: Callable[[], QueuePool | None] = lambda: None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool = self.pool()
        if pool is None:
            return
        for name, documentation, value in (
            ("db_pool_size", "Connections the pool keeps", pool.size()),
            ("db_pool_checked_out", "Connections in use by requests", pool.checkedout()),
            ("db_pool_idle", "Idle connections in the pool", pool.checkedin()),
            ("db_pool_overflow", "Connections open beyond the pool size", max(pool.overflow(), 0)),
        ):
            yield GaugeMetricFamily(name, documentation, value=value)


POOL = PoolCollector()
REGISTRY.register(POOL)

"""Prometheus metrics of the worker, on a registry of its own per worker instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.replies import LookupReply

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests_consumed = Counter("card_lookup_requests_consumed", "Request records taken from Kafka.", registry=r)
        self.replies_published = Counter(
            "card_lookup_replies_published", "Replies published, by request status.", ["status"], registry=r
        )
        self.card_results = Counter("card_lookup_card_results", "Card results in replies, by status.", ["status"], registry=r)
        self.dead_letters = Counter("card_lookup_dead_letters", "Records sent to the dead-letter topic.", registry=r)
        self.request_latency = Histogram(
            "card_lookup_request_latency_seconds",
            "Time from taking a record to its reply being assembled.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.api_calls = Counter(
            "card_lookup_api_calls", "CareCloud API calls, by endpoint and HTTP status.", ["endpoint", "status"], registry=r
        )
        self.api_latency = Histogram(
            "card_lookup_api_latency_seconds", "CareCloud API call latency.", ["endpoint"], buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.batch_size = Histogram(
            "card_lookup_batch_card_numbers", "Card numbers per GET /cards call.", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.api_retries = Counter("card_lookup_api_retries", "Retried CareCloud API calls.", registry=r)
        self.requests_in_flight = Gauge("card_lookup_requests_in_flight", "Requests admitted and not yet finished.", registry=r)

    def observe_reply(self, reply: LookupReply, *, latency_s: float) -> None:
        self.request_latency.observe(latency_s)
        for result in reply.results:
            self.card_results.labels(status=result.status.value).inc()

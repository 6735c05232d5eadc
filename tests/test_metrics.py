"""Prometheus metrics: scraped from a real worker's /metrics after real traffic."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import ReplyCollector, RequestSender, lookup_request, wait_until
from tests.serving import serving_worker
from worker.limit import LimiterState
from worker.metrics import Metrics, RuntimeSources

REPLY_TIMEOUT_S = 30.0


def parse_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Map (sample name, sorted labels) to value for every sample in an exposition."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} is not exposed; exposed names: {sorted({n for n, _ in samples})}"
    return samples[key]


async def scrape(url: str) -> dict:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse_samples(response.text)


@pytest.mark.kafka
async def test_metrics_move_with_traffic(topics, simulator):
    async with serving_worker(topics, simulator, batch_linger_ms=20) as (worker, base_url):
        url = base_url + "/metrics"
        async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies, ReplyCollector(topics.dlq) as dlq:
            await sender.send_requests([("m-found", ["1000000000016", "2000000000025"]), ("m-missing", ["9999999999999"])])
            await sender.send(lookup_request("m-invalid", ["1000000000016", 1.5]))
            await sender.send(b'{"request_id": "m-rejected"}')
            await sender.send(b"{not json")
            await sender.flush()
            assert not await replies.wait_for(["m-found", "m-missing", "m-invalid", "m-rejected"], timeout_s=REPLY_TIMEOUT_S)
            assert await dlq.wait_for_records(1, timeout_s=REPLY_TIMEOUT_S)
            # The dead letter is counted after the broker acknowledges it.
            assert await wait_until(lambda: worker.pipeline.in_flight == 0, timeout_s=10)

        samples = await scrape(url)

    assert value(samples, "card_lookup_requests_consumed_total") == 5
    assert value(samples, "card_lookup_replies_published_total", status="complete") == 3
    assert value(samples, "card_lookup_replies_published_total", status="rejected") == 1
    assert value(samples, "card_lookup_dead_letters_total") == 1
    assert value(samples, "card_lookup_card_results_total", status="found") == 3
    assert value(samples, "card_lookup_card_results_total", status="not_found") == 1
    assert value(samples, "card_lookup_card_results_total", status="invalid") == 1
    assert value(samples, "card_lookup_request_latency_seconds_count") == 3

    cards_calls = value(samples, "card_lookup_api_calls_total", endpoint="GET /cards", status="200")
    assert cards_calls >= 1
    assert value(samples, "card_lookup_api_calls_total", endpoint="POST /users/actions/login", status="200") == 1
    assert value(samples, "card_lookup_api_latency_seconds_count", endpoint="GET /cards") == cards_calls
    assert value(samples, "card_lookup_batch_card_numbers_count") == cards_calls
    assert value(samples, "card_lookup_batch_card_numbers_sum") >= 3  # three distinct numbers at least

    assert value(samples, "card_lookup_requests_in_flight") == 0
    assert value(samples, "card_lookup_api_calls_in_flight") == 0
    assert value(samples, "card_lookup_api_paused") == 0
    assert value(samples, "card_lookup_api_concurrency_cap") >= 1
    assert value(samples, "card_lookup_assigned_partitions") == 3
    assert value(samples, "card_lookup_admission_paused") == 0
    for partition in range(3):
        lag = value(samples, "card_lookup_consumer_lag", topic=topics.requests, partition=str(partition))
        assert lag == 0, f"partition {partition} lags {lag} records after every request was answered"

    # FastStream's middleware counts the replies and the dead letter it published.
    published = sum(
        sample_value
        for (name, labels), sample_value in samples.items()
        if name == "faststream_published_messages_total" and ("status", "success") in labels
    )
    assert published == 5


@pytest.mark.kafka
async def test_metrics_count_429_and_retries(topics, simulator):
    async with serving_worker(topics, simulator, api_backoff_initial_s=0.05, api_retry_after_max_s=1.0) as (worker, base_url):
        url = base_url + "/metrics"
        async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
            await sender.send_requests([("warm-up", ["1000000000016"])])
            assert not await replies.wait_for(["warm-up"], timeout_s=REPLY_TIMEOUT_S)
            simulator.set_faults(fail_next={"status": 429, "count": 2, "retry_after": "1"})
            await sender.send_requests([("after-429", ["2000000000025"])])
            assert not await replies.wait_for(["after-429"], timeout_s=REPLY_TIMEOUT_S)
        samples = await scrape(url)

    assert replies.reply("after-429")["results"][0]["status"] == "found"
    assert value(samples, "card_lookup_api_calls_total", endpoint="GET /cards", status="429") == 2
    assert value(samples, "card_lookup_api_rate_limited_total") == 2
    assert value(samples, "card_lookup_api_retries_total") == 2
    assert value(samples, "card_lookup_api_pauses_total") >= 1


def _limiter_state(**changes: Any) -> LimiterState:
    fields: dict[str, Any] = {
        "cap": 4,
        "target_cap": 8,
        "in_flight": 3,
        "queued": 7,
        "tokens": 2.5,
        "rate_per_s": 10.0,
        "paused": True,
        "pause_until": 105.0,
        "pause_remaining_s": 5.0,
        "probing": False,
        "rate_limited_total": 11,
        "server_errors_total": 12,
        "timeouts_total": 13,
        "retries_total": 14,
        "pauses_total": 15,
    }
    fields.update(changes)
    return LimiterState(**fields)


class _Consumer:
    def assignment(self) -> set:
        return set()

    def paused(self) -> set:
        return set()


def _metrics_with(state: LimiterState) -> Metrics:
    metrics = Metrics()
    metrics.runtime.watch(
        RuntimeSources(
            limiter_state=lambda: state,
            requests_in_flight=lambda: 17,
            admission_paused=lambda: True,
            admission_pauses_total=lambda: 2,
            consumer=lambda: _Consumer(),
            publish_retries_total=lambda: 3,
            loop_lag_s=lambda: 0.25,
            cache_hits_total=lambda: 9,
            cache_entries=lambda: 4,
        )
    )
    return metrics


def test_runtime_collector_reads_limiter():
    from prometheus_client import generate_latest

    samples = parse_samples(generate_latest(_metrics_with(_limiter_state()).registry).decode())
    assert value(samples, "card_lookup_api_concurrency_cap") == 4
    assert value(samples, "card_lookup_api_concurrency_target_cap") == 8
    assert value(samples, "card_lookup_api_calls_in_flight") == 3
    assert value(samples, "card_lookup_api_calls_queued") == 7
    assert value(samples, "card_lookup_api_rate_tokens") == 2.5
    assert value(samples, "card_lookup_api_rate_per_second") == 10
    assert value(samples, "card_lookup_api_paused") == 1
    assert value(samples, "card_lookup_api_pause_remaining_seconds") == 5
    assert value(samples, "card_lookup_api_rate_limited_total") == 11
    assert value(samples, "card_lookup_api_server_errors_total") == 12
    assert value(samples, "card_lookup_api_timeouts_total") == 13
    assert value(samples, "card_lookup_api_retries_total") == 14
    assert value(samples, "card_lookup_api_pauses_total") == 15
    assert value(samples, "card_lookup_requests_in_flight") == 17
    assert value(samples, "card_lookup_admission_paused") == 1
    assert value(samples, "card_lookup_admission_pauses_total") == 2
    assert value(samples, "card_lookup_publish_retries_total") == 3
    assert value(samples, "card_lookup_event_loop_lag_seconds") == 0.25
    assert value(samples, "card_lookup_cache_hits_total") == 9
    assert value(samples, "card_lookup_cache_entries") == 4


def test_runtime_collector_omits_rate_without_bucket():
    from prometheus_client import generate_latest

    samples = parse_samples(generate_latest(_metrics_with(_limiter_state(tokens=None, rate_per_s=None)).registry).decode())
    names = {name for name, _ in samples}
    assert "card_lookup_api_rate_tokens" not in names
    assert "card_lookup_api_rate_per_second" not in names


def test_metrics_unwatched_exposes_counters_only():
    from prometheus_client import generate_latest

    text = generate_latest(Metrics().registry).decode()
    assert "card_lookup_requests_consumed_total 0.0" in text
    assert "card_lookup_api_paused" not in text

"""The upstream limiter against the simulator's fault injection, through the real broker."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from simulator.data import generated_card_number
from simulator.testing import SimulatorProcess
from tests.harness import ReplyCollector, RequestSender, Topics, WorkerProcess

pytestmark = pytest.mark.kafka

# Calls already on the wire when the 429 is answered may still arrive just
# after it; they left before the pause began.
IN_FLIGHT_SLACK_S = 0.25


def cards_calls(simulator: SimulatorProcess) -> list[dict]:
    return [call for call in simulator.calls() if call["endpoint"] == "GET /cards"]


async def send_distinct_requests(topics: Topics, count: int, *, cards_per_request: int = 2, prefix: str = "r") -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(count)]
    async with RequestSender(topics.requests) as sender:
        await sender.send_requests(
            (request_id, [generated_card_number(i * cards_per_request + j) for j in range(cards_per_request)])
            for i, request_id in enumerate(ids)
        )
    return ids


async def assert_pause_honoured(topics, start_worker, retry_after: Callable[[], str], min_gap_s: float) -> None:
    """Check that no call arrives within `min_gap_s` after the 429, or before the pause's HTTP date."""
    with SimulatorProcess(generate_cards=2000) as simulator:
        await start_worker.start(topics, simulator, batch_max_cards=5, batch_linger_ms=2, api_max_concurrency=8)
        header = retry_after()
        simulator.set_faults(fail_next={"status": 429, "count": 1, "retry_after": header})

        async with ReplyCollector(topics.replies) as replies:
            ids = await send_distinct_requests(topics, 100)
            missing = await replies.wait_for(ids, timeout_s=60)
        assert not missing
        assert all(replies.reply(request_id)["status"] == "complete" for request_id in ids)

        calls = cards_calls(simulator)
        rate_limited = [call for call in calls if call["status"] == 429]
        assert len(rate_limited) == 1
        paused_at = rate_limited[0]["t"]
        parsed_date = email.utils.parsedate_to_datetime(header) if not header.isdigit() else None
        if parsed_date is not None:
            # An HTTP date has whole-second precision, so the pause ends at that second.
            min_gap_s = parsed_date.timestamp() - paused_at - 0.05
        assert min_gap_s > 1.0, f"the pause under test is only {min_gap_s:.2f} s long"
        during_pause = [call for call in calls if paused_at + IN_FLIGHT_SLACK_S < call["t"] < paused_at + min_gap_s]
        assert not during_pause, f"{len(during_pause)} call(s) arrived during the Retry-After pause"
        after = [call for call in calls if call["t"] >= paused_at + min_gap_s]
        assert after, "no call followed the pause"
        assert all(call["status"] == 200 for call in after)
        assert len(calls) > 10, "the load did not spread over several concurrent batches"


async def test_retry_after_seconds_pauses_every_batch(topics, start_worker):
    await assert_pause_honoured(topics, start_worker, lambda: "2", min_gap_s=2.0 - 0.05)


async def test_retry_after_http_date_pauses_every_batch(topics, start_worker):
    await assert_pause_honoured(
        topics, start_worker, lambda: email.utils.formatdate(time.time() + 3, usegmt=True), min_gap_s=0.0
    )


async def test_rate_limited_api_answers_everything(topics, start_worker):
    rate = 15
    with SimulatorProcess(generate_cards=10_000, rate_limit_per_s=rate, rate_limit_burst=3) as simulator:
        await start_worker.start(topics, simulator, batch_max_cards=25, api_max_concurrency=16)
        async with ReplyCollector(topics.replies) as replies:
            ids = await send_distinct_requests(topics, 2000, cards_per_request=2)
            missing = await replies.wait_for(ids, timeout_s=120)

        assert not missing, f"{len(missing)} of 2000 requests got no reply"
        statuses = {replies.reply(request_id)["status"] for request_id in ids}
        assert statuses == {"complete"}

        calls = cards_calls(simulator)
        adapted = calls[len(calls) // 4 :]
        share = sum(call["status"] == 429 for call in adapted) / len(adapted)
        print(f"GET /cards calls: {len(calls)}, 429 share after adapting: {share:.2%}")
        assert share < 0.02, f"429 share {share:.2%} once adapted, over {len(adapted)} calls"


async def test_unavailable_window_and_deadlines(topics, start_worker):
    window_s = 5.0
    with SimulatorProcess(generate_cards=1000) as simulator:
        await start_worker.start(topics, simulator, api_backoff_initial_s=0.5, api_max_attempts=8)
        async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
            await sender.send_requests([("warm-up", [generated_card_number(0)])])
            assert not await replies.wait_for(["warm-up"], timeout_s=30)

            simulator.set_faults(unavailable_for_s=window_s)
            window_ends = time.monotonic() + window_s
            patient = [f"patient-{i}" for i in range(20)]
            hurried = [f"hurried-{i}" for i in range(5)]
            await sender.send_requests((request_id, [generated_card_number(10 + i)]) for i, request_id in enumerate(patient))
            await sender.send_requests(
                ((request_id, [generated_card_number(100 + i)]) for i, request_id in enumerate(hurried)), deadline_ms=1500
            )

            assert not await replies.wait_for(hurried, timeout_s=window_s - 1.0)
            assert time.monotonic() < window_ends, "deadline replies came only after the window"
            assert not await replies.wait_for(patient, timeout_s=60)

    for request_id in hurried:
        reply = replies.reply(request_id)
        assert reply["status"] == "partial"
        assert reply["results"][0]["error"]["kind"] == "deadline_exceeded"
    for request_id in patient:
        assert replies.reply(request_id)["status"] == "complete", replies.reply(request_id)


@pytest.mark.slow
async def test_stalled_api_backlog_keeps_memory_flat_and_group_stable(topics, tmp_path: Path):
    backlog = 50_000
    memory_bound_mb = 200
    with SimulatorProcess(generate_cards=1000) as simulator:
        worker = WorkerProcess(
            {
                **topics.worker_env(),
                "CARD_LOOKUP_API_BASE_URL": simulator.base_url,
                "CARD_LOOKUP_MAX_IN_FLIGHT_REQUESTS": "1000",
                "CARD_LOOKUP_MAX_POLL_INTERVAL_MS": "10000",
                "CARD_LOOKUP_SESSION_TIMEOUT_MS": "10000",
                "CARD_LOOKUP_API_READ_TIMEOUT_S": "60",
            },
            log_path=tmp_path / "worker.log",
        )
        worker.start()
        try:
            process = psutil.Process(worker.process.pid)
            async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
                await sender.send_requests([("before-stall", [generated_card_number(1)])])
                assert not await replies.wait_for(["before-stall"], timeout_s=30)
                baseline_mb = process.memory_info().rss / 2**20

                simulator.set_faults(stall=True)
                await sender.send_requests((f"backlog-{i}", [generated_card_number(i % 1000)]) for i in range(backlog))

                # Stall for longer than max.poll.interval.ms: a consumer blocked
                # in its handler would be thrown out of the group by now.
                peak_mb = baseline_mb
                stall_until = time.monotonic() + 20
                while time.monotonic() < stall_until:
                    peak_mb = max(peak_mb, process.memory_info().rss / 2**20)
                    await asyncio.sleep(0.5)
                assert worker.running()
                simulator.set_faults(stall=False)

                missing = await replies.wait_for([f"backlog-{i}" for i in range(0, backlog, 1000)], timeout_s=120)
        finally:
            worker.terminate()

    log = (tmp_path / "worker.log").read_text()
    print(f"RSS baseline {baseline_mb:.0f} MiB, peak during a {backlog}-request backlog {peak_mb:.0f} MiB")
    assert peak_mb - baseline_mb < memory_bound_mb, f"RSS grew {peak_mb - baseline_mb:.0f} MiB, over {memory_bound_mb} MiB"
    assert log.count("partitions assigned") == 1, "the consumer group rebalanced during the stall"
    assert "partitions revoked" not in log
    assert not missing, f"{len(missing)} sampled backlog requests got no reply after the stall ended"

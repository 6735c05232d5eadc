"""Delivery under faults: the worker runs as a real process that is killed, stopped and flooded, and the broker restarts.

Every test counts replies by request id. The promise is at least once:
every request gets a reply, and a crash may add duplicates, which are printed.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import psutil
import pytest

from simulator.testing import SimulatorProcess
from tests.faults import (
    DeliveryReport,
    PrivateBroker,
    card_pool,
    log_count,
    make_requests,
    poll_until_quiet,
    reply_json,
    wait_for_log,
    wait_for_replies,
)
from tests.harness import (
    ReplyCollector,
    RequestSender,
    Topics,
    WorkerProcess,
    committed_offsets,
    create_topics,
    end_offsets,
    lookup_request,
)
from worker.runtime import Worker
from worker.settings import load_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 6
CARDS = 2000
PRIVATE_BROKER_PORT = int(os.environ.get("DELIVERY_TEST_BROKER_PORT", "19092"))
ALL_REPLIES_TIMEOUT_S = 90.0
# A killed member is noticed after its session times out; 6 s is the
# broker's minimum (group.min.session.timeout.ms).
SESSION_TIMEOUT_MS = 6000


def worker_env(topics: Topics, simulator: SimulatorProcess, *, bootstrap: str | None = None, **settings: str) -> dict[str, str]:
    env = topics.worker_env(bootstrap)
    env.update(
        {
            "CARD_LOOKUP_API_BASE_URL": simulator.base_url,
            "CARD_LOOKUP_COMMIT_INTERVAL_MS": "200",
            "CARD_LOOKUP_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        }
    )
    env.update({f"CARD_LOOKUP_{name.upper()}": value for name, value in settings.items()})
    return env


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("DELIVERY_TEST_SEED", str(random.randrange(1_000_000))))
    print(f"random seed {value} (set DELIVERY_TEST_SEED={value} to repeat)")
    return value


@pytest.fixture
def workers(tmp_path: Path):
    started: list[WorkerProcess] = []

    def make(env: dict[str, str], name: str = "worker") -> WorkerProcess:
        worker = WorkerProcess(env, log_path=tmp_path / f"{name}.log")
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.close()


async def test_kill9_every_request_answered(kafka, workers, seed):
    topics = Topics.unique("kill9")
    await topics.create(partitions=PARTITIONS)
    chooser = random.Random(seed)
    requests = make_requests("kill9", 5000, card_pool(CARDS), seed=seed)
    request_ids = [request_id for request_id, _ in requests]

    with SimulatorProcess(generate_cards=CARDS, latency_ms=30, latency_jitter_ms=30) as simulator:
        worker = workers(worker_env(topics, simulator))
        async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
            await sender.send_requests(requests)
            worker.start()

            kill_after = chooser.randrange(100, 3500)
            answered = await wait_for_replies(replies, kill_after, timeout_s=ALL_REPLIES_TIMEOUT_S)
            pid = worker.process.pid
            worker.kill()
            print(f"killed worker pid {pid} with SIGKILL after {answered} of {len(requests)} requests had replies")
            assert answered < len(requests), "every request was answered before the kill; the kill hit nothing in flight"

            worker.start()
            missing = await replies.wait_for(request_ids, timeout_s=ALL_REPLIES_TIMEOUT_S)
            await poll_until_quiet(replies, quiet_s=2.0, timeout_s=30.0)

    report = DeliveryReport.of(replies, request_ids)
    print(report.describe("kill -9"))
    assert not missing, f"{len(missing)} requests have no reply, e.g. {sorted(missing)[:10]}"
    assert report.missing == set()
    for request_id in chooser.sample(request_ids, 50):
        reply = reply_json(replies, request_id)
        assert reply["request_id"] == request_id
        assert reply["status"] == "complete"


async def test_broker_restart_every_request_answered(workers, seed, tmp_path):
    broker = PrivateBroker(PRIVATE_BROKER_PORT)
    topics = Topics.unique("restart")
    before = make_requests("before", 2000, card_pool(CARDS), seed=seed)
    after = make_requests("after", 500, card_pool(CARDS), seed=seed + 1)
    all_ids = [request_id for request_id, _ in before + after]

    with SimulatorProcess(generate_cards=CARDS, latency_ms=30) as simulator:
        # The worker starts first, so it must wait for the broker instead of exiting.
        worker = workers(worker_env(topics, simulator, bootstrap=broker.bootstrap))
        worker_started = asyncio.get_running_loop().run_in_executor(None, lambda: worker.start(wait_ready_s=120))
        try:
            assert await wait_for_log(worker, "connecting the admin client to Kafka failed", count=2, timeout_s=30)
            assert worker.running(), f"the worker exited while the broker was down:\n{worker.log_tail()}"

            broker.start(fresh=True)
            await broker.create_topics(topics, partitions=PARTITIONS)
            await worker_started
            pid = worker.process.pid

            async with RequestSender(topics.requests, bootstrap=broker.bootstrap) as sender:
                await sender.send_requests(before)
            async with ReplyCollector(topics.replies, bootstrap=broker.bootstrap) as replies:
                answered = await wait_for_replies(replies, 200, timeout_s=ALL_REPLIES_TIMEOUT_S)
            print(f"stopping the broker after {answered} of {len(before)} requests had replies")

            broker.stop()
            assert await wait_for_log(worker, "lost the connection to Kafka", timeout_s=30), (
                f"the worker did not report the lost connection:\n{worker.log_tail()}"
            )
            # NOTE: aiokafka 0.14's producer retries metadata without backoff while
            # a reply waits for a partition leader, so CPU use is only printed.
            process = psutil.Process(worker.process.pid)
            process.cpu_percent()
            await asyncio.sleep(3.0)
            print(f"worker CPU while the broker was down: {process.cpu_percent():.0f}% of one core")
            assert worker.running(), f"the worker exited while the broker was down:\n{worker.log_tail()}"
            broker.start()
            assert await wait_for_log(worker, "Kafka responds; reporting ready", count=2, timeout_s=60)

            async with RequestSender(topics.requests, bootstrap=broker.bootstrap) as sender:
                await sender.send_requests(after)
            async with ReplyCollector(topics.replies, bootstrap=broker.bootstrap) as replies:
                missing = await replies.wait_for(all_ids, timeout_s=ALL_REPLIES_TIMEOUT_S * 2)
                await poll_until_quiet(replies, quiet_s=2.0, timeout_s=30.0)

            assert worker.running()
            assert worker.process.pid == pid
        finally:
            worker.close()
            broker.stop()

    report = DeliveryReport.of(replies, all_ids)
    print(report.describe("broker restart"))
    assert not missing, f"{len(missing)} requests have no reply, e.g. {sorted(missing)[:10]}\n{worker.log_tail()}"


async def test_group_member_killed_other_takes_over(kafka, workers, seed):
    topics = Topics.unique("group")
    await topics.create(partitions=PARTITIONS)
    requests = make_requests("group", 3000, card_pool(CARDS), seed=seed)
    request_ids = [request_id for request_id, _ in requests]

    with SimulatorProcess(generate_cards=CARDS, latency_ms=30, latency_jitter_ms=30) as simulator:
        env = worker_env(topics, simulator, max_in_flight_requests="300")
        survivor = workers(env, "survivor")
        victim = workers(env, "victim")
        survivor.start()
        victim.start()
        assert await wait_for_log(victim, "partitions assigned: requests.", timeout_s=30)
        survivor_pid = survivor.process.pid

        async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
            await sender.send_requests(requests)
            answered = await wait_for_replies(replies, 500, timeout_s=ALL_REPLIES_TIMEOUT_S)
            victim.kill()
            print(f"killed one of two group members after {answered} of {len(requests)} requests had replies")

            missing = await replies.wait_for(request_ids, timeout_s=ALL_REPLIES_TIMEOUT_S)
            await poll_until_quiet(replies, quiet_s=2.0, timeout_s=30.0)

    report = DeliveryReport.of(replies, request_ids)
    print(report.describe("group member killed"))
    assert not missing, f"{len(missing)} requests have no reply, e.g. {sorted(missing)[:10]}\n{survivor.log_tail()}"
    assert survivor.running()
    assert survivor.process.pid == survivor_pid
    assert log_count(survivor, "partitions assigned") >= 2, "the survivor never got a new assignment"


async def test_sigterm_commits_only_answered(kafka, workers, seed):
    topics = Topics.unique("sigterm")
    await topics.create(partitions=PARTITIONS)
    requests = make_requests("sigterm", 3000, card_pool(CARDS), seed=seed)
    request_ids = [request_id for request_id, _ in requests]

    with SimulatorProcess(generate_cards=CARDS, latency_ms=30, latency_jitter_ms=30) as simulator:
        worker = workers(worker_env(topics, simulator, max_in_flight_requests="500"))
        async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies, ReplyCollector(topics.requests) as sent:
            await sender.send_requests(requests)
            worker.start()
            answered = await wait_for_replies(replies, random.Random(seed).randrange(200, 1500), timeout_s=ALL_REPLIES_TIMEOUT_S)

            exit_code = worker.terminate(timeout_s=60)
            print(f"SIGTERM after {answered} of {len(requests)} requests had replies")
            assert exit_code == 0, f"the worker exited with {exit_code}:\n{worker.log_tail()}"
            assert log_count(worker, "did not finish before the shutdown timeout") == 0

            await poll_until_quiet(replies, quiet_s=2.0, timeout_s=30.0)
            await sent.wait_for(request_ids, timeout_s=30)
            committed = await committed_offsets(topics.group, topics.requests, PARTITIONS)
            ends = await end_offsets(topics.requests, PARTITIONS)
            answered_before_restart = set(replies.by_request_id)
            committed_ids = {
                request_id for request_id in request_ids if sent.by_request_id[request_id][0].offset < committed[sent.by_request_id[request_id][0].partition]
            }
            print(f"committed {committed} of ends {ends}; {len(answered_before_restart)} replies before the restart")

            assert committed_ids - answered_before_restart == set(), "a committed request has no reply"
            assert answered_before_restart - committed_ids == set(), "a request was answered but its offset not committed"
            assert len(committed_ids) < len(request_ids), "the run finished before SIGTERM; nothing was left to redo"

            worker.start()
            missing = await replies.wait_for(request_ids, timeout_s=ALL_REPLIES_TIMEOUT_S)
            await poll_until_quiet(replies, quiet_s=2.0, timeout_s=30.0)
            assert worker.terminate(timeout_s=60) == 0

        final_committed = await committed_offsets(topics.group, topics.requests, PARTITIONS)

    report = DeliveryReport.of(replies, request_ids)
    print(report.describe("SIGTERM and restart"))
    assert not missing, f"{len(missing)} requests have no reply after the restart"
    assert report.duplicates == {}, "a graceful stop must not cause duplicate replies"
    assert final_committed == ends


POISON_KINDS = (
    "binary",
    "broken-json",
    "json-array",
    "wrong-types",
    "too-large",
    "bad-header",
    "missing-reply-topic",
    "illegal-reply-topic",
    "tombstone",
    "surrogate-id",
    "deep-nesting",
)


def poison_message(kind: str, index: int, chooser: random.Random) -> tuple[bytes | None, dict[str, str | bytes]]:
    """A malformed message of `kind`: its value and headers."""
    request_id = f"bad-{index}"
    if kind == "binary":
        return bytes(chooser.randrange(128, 256) for _ in range(chooser.randrange(1, 200))), {}
    if kind == "broken-json":
        return b'{"request_id": "' + request_id.encode() + b'", "card_numbers": [', {}
    if kind == "json-array":
        return b'[{"request_id": "' + request_id.encode() + b'"}]', {}
    if kind == "wrong-types":
        return b'{"request_id": "' + request_id.encode() + b'", "card_numbers": {"a": 1}, "deadline_ms": "soon"}', {}
    if kind == "too-large":
        return lookup_request(request_id, ["9" * 60] * 80), {}
    if kind == "bad-header":
        return lookup_request(request_id, ["1"]), {"correlation_id": b"\xff\xfe\xfd"}
    if kind == "missing-reply-topic":
        return lookup_request(request_id, ["1"]), {"reply_to": f"no-such-topic-{index}"}
    if kind == "illegal-reply-topic":
        return lookup_request(request_id, ["1"]), {"reply_to": "not a topic/name"}
    if kind == "tombstone":
        return None, {}
    if kind == "surrogate-id":
        return b'{"request_id": "bad\\ud800", "card_numbers": ["1"]}', {}
    if kind == "deep-nesting":
        return b"[" * 2000 + b"]" * 2000, {}
    raise ValueError(f"unknown poison kind {kind!r}")


async def test_poison_mix_worker_survives(kafka, workers, seed):
    topics = Topics.unique("poison")
    await topics.create(partitions=PARTITIONS)
    chooser = random.Random(seed)
    valid = make_requests("good", 1000, card_pool(CARDS), seed=seed)
    valid_ids = [request_id for request_id, _ in valid]
    poison_keys = [f"bad-{index}".encode() for index in range(1000)]

    with SimulatorProcess(generate_cards=CARDS) as simulator:
        worker = workers(worker_env(topics, simulator, max_request_bytes="4096"))
        worker.start()
        pid = worker.process.pid
        async with (
            RequestSender(topics.requests) as sender,
            ReplyCollector(topics.replies) as replies,
            ReplyCollector(topics.dlq) as dlq,
        ):
            for index, (request_id, numbers) in enumerate(valid):
                kind = POISON_KINDS[index % len(POISON_KINDS)]
                value, headers = poison_message(kind, index, chooser)
                await sender.send(value, key=poison_keys[index], headers=headers)
                await sender.send(lookup_request(request_id, numbers), key=request_id.encode())
            await sender.flush()

            missing = await replies.wait_for(valid_ids, timeout_s=ALL_REPLIES_TIMEOUT_S)
            give_up_at = time.monotonic() + ALL_REPLIES_TIMEOUT_S
            while time.monotonic() < give_up_at:
                handled = {record.key for record in dlq.records} | {record.key for record in replies.records}
                if handled.issuperset(poison_keys):
                    break
                await dlq.poll(0.2)
                await replies.poll(0.2)

    assert not missing, f"{len(missing)} valid requests have no reply, e.g. {sorted(missing)[:10]}"
    for request_id in valid_ids:
        assert reply_json(replies, request_id)["status"] == "complete"

    dead_by_key = {record.key: record for record in dlq.records}
    rejected_by_key = {record.key: record for record in replies.records if record.key in set(poison_keys)}
    unhandled = [key for key in poison_keys if key not in dead_by_key and key not in rejected_by_key]
    assert unhandled == [], f"{len(unhandled)} malformed messages are neither on the DLQ nor rejected, e.g. {unhandled[:10]}"
    for key, record in dead_by_key.items():
        assert record.headers.get("x-dlq-reason"), f"the dead letter {key!r} has no reason"
    for key, record in rejected_by_key.items():
        reply = record.json()
        assert reply["status"] == "rejected", f"{key!r} was answered {reply['status']}"
        assert reply["error"]["message"], f"the rejection of {key!r} has no reason"
    print(f"poison: {len(dead_by_key)} dead letters, {len(rejected_by_key)} rejected replies")

    assert worker.running(), f"the worker died:\n{worker.log_tail()}"
    assert worker.process.pid == pid
    assert worker.starts == 1


async def test_reply_to_created_topic_answered(kafka, workers):
    topics = Topics.unique("replyto")
    await topics.create(partitions=PARTITIONS)
    private_topic = topics.replies + ".private"
    await create_topics([private_topic], partitions=1)

    with SimulatorProcess(generate_cards=10) as simulator:
        worker = workers(worker_env(topics, simulator))
        worker.start()
        async with RequestSender(topics.requests) as sender, ReplyCollector(private_topic) as private:
            await sender.send(lookup_request("private-1", card_pool(2)), headers={"reply_to": private_topic})
            await sender.flush()
            missing = await private.wait_for(["private-1"], timeout_s=30)

    assert not missing
    assert reply_json(private, "private-1")["status"] == "complete"


async def test_kafka_connected_tracks_broker(kafka, topics, simulator, start_worker):
    worker = await start_worker.start(topics, simulator)
    assert worker.kafka_connected()

    closed_port = PrivateBroker(PRIVATE_BROKER_PORT + 10)
    overrides = {**topics.settings_overrides(), "kafka_bootstrap_servers": closed_port.bootstrap, "http_port": 0}
    unreachable = Worker(load_settings(**overrides))
    starting = asyncio.ensure_future(unreachable.create_app().start())
    try:
        await asyncio.sleep(2.0)
        assert not starting.done(), "the start gave up while Kafka was unreachable"
        assert not unreachable.kafka_connected()
        assert await unreachable.probe.check() is False
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await unreachable.stop()

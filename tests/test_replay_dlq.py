"""scripts/replay_dlq.py against the local broker, with topics of its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import ROOT, ReplyCollector, RequestSender, Topics, bootstrap_servers

pytestmark = pytest.mark.kafka

SCRIPT = ROOT / "scripts" / "replay_dlq.py"


def run_replay(topics: Topics, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **topics.worker_env(), "CARD_LOOKUP_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers()}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


async def _fill_dlq(topics: Topics) -> None:
    async with RequestSender(topics.dlq) as sender:
        for number in range(3):
            await sender.send(
                f'{{"request_id": "dead-{number}", "card_numbers": ["400000000000000{number}"]}}'.encode(),
                key=f"key-{number}".encode(),
                headers={
                    "correlation_id": f"corr-{number}",
                    "x-dlq-reason": f"the reply could not be published; card 400000000000000{number}",
                    "x-dlq-source-topic": topics.requests,
                    "x-dlq-source-offset": str(number),
                },
            )
        await sender.flush()


async def test_replay_copies_records_without_dlq_headers(kafka):
    topics = Topics.unique("replay")
    await topics.create(partitions=1)
    await _fill_dlq(topics)

    first = run_replay(topics, "--max-records", "2")
    assert first.returncode == 0, first.stderr
    assert "replayed 2 record(s)" in first.stdout
    assert "4000000000000000" not in first.stdout, "the reason's card number was printed unmasked"

    async with ReplyCollector(topics.requests) as requests:
        copied = await requests.wait_for_records(2, timeout_s=30)
        assert len(copied) == 2
        assert [record.key for record in copied] == [b"key-0", b"key-1"]
        assert copied[0].json() == {"request_id": "dead-0", "card_numbers": ["4000000000000000"]}
        assert copied[0].headers == {"correlation_id": b"corr-0"}

        second = run_replay(topics, "--max-records", "10")
        assert second.returncode == 0, second.stderr
        assert "replayed 1 record(s)" in second.stdout
        assert len(await requests.wait_for_records(3, timeout_s=30)) == 3
        assert requests.records[2].key == b"key-2"


async def test_replay_dry_run_sends_nothing(kafka):
    topics = Topics.unique("replay-dry")
    await topics.create(partitions=1)
    await _fill_dlq(topics)

    result = run_replay(topics, "--max-records", "5", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would replay 3 record(s)" in result.stdout
    assert result.stdout.count(f"{topics.dlq}[0]@") == 3

    async with ReplyCollector(topics.requests) as requests:
        await requests.poll(2.0)
        assert requests.records == []

    # Nothing was committed, so a real run still finds all three.
    real = run_replay(topics, "--max-records", "5")
    assert "replayed 3 record(s)" in real.stdout, real.stderr


def test_replay_requires_positive_bound():
    result = subprocess.run([sys.executable, str(SCRIPT), "--max-records", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--max-records must be at least 1" in result.stderr


async def test_replay_missing_topic_fails_clearly(kafka):
    topics = Topics.unique("replay-missing")
    result = run_replay(topics, "--max-records", "1")
    assert result.returncode == 1
    assert f"the topic {topics.dlq!r} does not exist" in result.stderr


def test_replay_drops_generated_correlation_id():
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_dlq", ROOT / "scripts" / "replay_dlq.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    replay_headers = module.replay_headers

    generated = [("correlation_id", b"made-up"), ("x-dlq-no-correlation-id", b"true"), ("x-dlq-reason", b"bad"), ("trace", b"1")]
    assert replay_headers(generated) == [("trace", b"1")]
    original = [("correlation_id", b"from-requester"), ("x-dlq-reason", b"bad")]
    assert replay_headers(original) == [("correlation_id", b"from-requester")]

"""Copy dead-letter records back to the request topic, so the worker serves them again.

    python scripts/replay_dlq.py --max-records 100 --dry-run   # list what would be replayed
    python scripts/replay_dlq.py --max-records 100              # replay up to 100 records

Each record keeps its value, key and headers; the `x-dlq-*` headers the worker
added are removed. Progress is committed in the consumer group given by
`--group` (default: the worker's group plus `.dlq-replay`), so a second run
continues after the last record the first run replayed; `--dry-run` commits
nothing. Records dead-lettered after the run starts are left for the next
run, so a record that fails again is not replayed in a loop.

Kafka connection settings, the dead-letter topic and the request topic come
from the worker's `CARD_LOOKUP_*` variables; the options override the topics.
Record values are never printed, because they contain card numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.errors import KafkaError  # noqa: E402
from aiokafka.structs import OffsetAndMetadata  # noqa: E402

from schemas.dead_letter import DeadLetterHeaders  # noqa: E402
from worker.kafka import admin_options  # noqa: E402
from worker.logs import redact  # noqa: E402
from worker.settings import SettingsError, load_settings  # noqa: E402

DLQ_HEADER_PREFIX = "x-dlq-"
POLL_TIMEOUT_MS = 1000


def replay_headers(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> list[tuple[str, bytes]]:
    """Restore the original headers: drop `x-dlq-*`, and the correlation id the producer generated."""
    names = {name.lower() for name, _ in headers}
    generated_correlation_id = DeadLetterHeaders.NO_CORRELATION_ID in names
    return [
        (name, value)
        for name, value in headers
        if not name.lower().startswith(DLQ_HEADER_PREFIX) and not (generated_correlation_id and name == "correlation_id")
    ]


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Copy dead-letter records back to the request topic.")
    parser.add_argument("--max-records", type=int, required=True, help="maximum number of records to replay in this run")
    parser.add_argument("--dry-run", action="store_true", help="list the records without producing or committing")
    parser.add_argument("--from-topic", help="dead-letter topic to read (default: CARD_LOOKUP_DLQ_TOPIC)")
    parser.add_argument("--to-topic", help="topic to write to (default: CARD_LOOKUP_REQUEST_TOPIC)")
    parser.add_argument("--group", help="consumer group that stores replay progress (default: <consumer group>.dlq-replay)")
    arguments = parser.parse_args(argv)
    if arguments.max_records < 1:
        parser.error("--max-records must be at least 1")
    return arguments


async def replay(arguments: argparse.Namespace) -> int:
    """Replay up to `--max-records` records present when the run starts; return how many were (or would be) replayed."""
    settings = load_settings()
    source = arguments.from_topic or settings.dlq_topic
    target = arguments.to_topic or settings.request_topic
    group = arguments.group or f"{settings.consumer_group}.dlq-replay"
    connection = admin_options(settings)

    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, auto_offset_reset="earliest", **connection)
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **connection)
    await consumer.start()
    await producer.start()
    try:
        # Checked before asking the producer, whose metadata request could auto-create a mistyped topic.
        if source not in await consumer.topics():
            raise SystemExit(f"the topic {source!r} does not exist; check --from-topic or CARD_LOOKUP_DLQ_TOPIC")
        partitions = [TopicPartition(source, number) for number in sorted(await _partitions(producer, source))]
        if not partitions:
            raise SystemExit(f"the topic {source!r} does not exist or has no partitions; check --from-topic")
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        count = await _copy(consumer, producer, ends, target, arguments)
    finally:
        await producer.stop()
        await consumer.stop()
    verb = "would replay" if arguments.dry_run else "replayed"
    print(f"{verb} {count} record(s) from {source!r} to {target!r}")
    return count


async def _copy(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    ends: dict[TopicPartition, int],
    target: str,
    arguments: argparse.Namespace,
) -> int:
    count = 0
    next_offsets: dict[TopicPartition, int] = {}
    while count < arguments.max_records and not await _reached(consumer, ends):
        batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=arguments.max_records - count)
        for partition, records in batches.items():
            for record in records:
                if record.offset >= ends[partition] or count >= arguments.max_records:
                    break
                headers = replay_headers(record.headers)
                reason = dict(record.headers).get("x-dlq-reason", b"").decode("utf-8", "replace")
                print(f"{partition.topic}[{partition.partition}]@{record.offset}: {redact(reason) or 'no reason recorded'}")
                if not arguments.dry_run:
                    await producer.send(target, record.value, key=record.key, headers=headers)
                next_offsets[partition] = record.offset + 1
                count += 1
    if not arguments.dry_run and next_offsets:
        await producer.flush()
        await consumer.commit({partition: OffsetAndMetadata(offset, "") for partition, offset in next_offsets.items()})
    return count


async def _partitions(producer: AIOKafkaProducer, topic: str) -> set[int]:
    try:
        return set(await producer.partitions_for(topic))
    except KafkaError:
        return set()


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    try:
        asyncio.run(replay(arguments))
    except SettingsError as exc:
        print(f"replay_dlq: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

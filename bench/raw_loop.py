"""Baseline for the overhead benchmark: the fastest consume-and-reply loop this stack allows.

It consumes request records with aiokafka, produces one fixed small reply per
record (keyed like the request, no parsing and no API call) with the worker's
producer settings (acks=all, idempotence), and commits after each poll. Its
throughput is the ceiling any worker built on aiokafka reaches on this machine.

    python -m bench.raw_loop --request-topic T --reply-topic R --group G
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

READY_LINE = "raw loop running"
REPLY_VALUE = b'{"status":"complete"}'
POLL_TIMEOUT_MS = 100
MAX_POLL_RECORDS = 500
DEFAULT_MAX_RUNTIME_S = 900.0


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_loop", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092", help="Kafka host:port list")
    parser.add_argument("--request-topic", required=True)
    parser.add_argument("--reply-topic", required=True)
    parser.add_argument("--group", required=True, help="Kafka consumer group id")
    parser.add_argument("--max-runtime-s", type=float, default=DEFAULT_MAX_RUNTIME_S, help="exit after this many seconds")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    consumer = AIOKafkaConsumer(
        args.request_topic,
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=MAX_POLL_RECORDS,
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap_servers, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    print(READY_LINE, flush=True)
    stop_at = time.monotonic() + args.max_runtime_s
    try:
        while not stop.is_set() and time.monotonic() < stop_at:
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_POLL_RECORDS)
            deliveries = [
                await producer.send(args.reply_topic, REPLY_VALUE, key=record.key)
                for records in batches.values()
                for record in records
            ]
            if deliveries:
                await asyncio.gather(*deliveries)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse_arguments(argv)))


if __name__ == "__main__":
    main()

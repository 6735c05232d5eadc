"""Send one lookup request to a running worker and print its reply.

    .venv/bin/python scripts/lookup.py 1000000000016 CARD10101
    .venv/bin/python scripts/lookup.py --secondary AXNFUAIOHFDSNKA

Kafka's address and the topics come from the same CARD_LOOKUP_* variables
the worker reads, so both sides agree on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.kafka import admin_options  # noqa: E402
from worker.settings import SettingsError, load_settings  # noqa: E402


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send one card lookup request and print the reply.")
    parser.add_argument("card_numbers", nargs="+", help="card numbers to look up")
    parser.add_argument("--secondary", action="store_true", help="search secondary card numbers")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="how long to wait for the reply, in seconds")
    return parser.parse_args()


async def look_up(card_numbers: list[str], secondary: bool, timeout_s: float) -> int:
    settings = load_settings()
    connection = admin_options(settings)
    request_id = f"lookup-{uuid.uuid4().hex[:12]}"
    request = {"request_id": request_id, "card_numbers": card_numbers, "search_secondary_card_number": secondary}

    # Subscribe before sending, from the end, so only this run's reply can match.
    replies = AIOKafkaConsumer(settings.reply_topic, group_id=None, auto_offset_reset="latest", **connection)
    producer = AIOKafkaProducer(**connection)
    await replies.start()
    await producer.start()
    try:
        await replies.seek_to_end()
        await producer.send_and_wait(
            settings.request_topic,
            json.dumps(request).encode(),
            key=request_id.encode(),
            headers=[("correlation_id", request_id.encode())],
        )
        reply = await asyncio.wait_for(_reply_for(replies, request_id), timeout=timeout_s)
    except TimeoutError:
        print(f"no reply for {request_id} on {settings.reply_topic!r} within {timeout_s:g}s; is the worker running?", file=sys.stderr)
        return 1
    finally:
        await producer.stop()
        await replies.stop()
    print(json.dumps(reply, indent=2, ensure_ascii=False))
    return 0


async def _reply_for(replies: AIOKafkaConsumer, request_id: str) -> dict:
    async for record in replies:
        try:
            reply = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if isinstance(reply, dict) and reply.get("request_id") == request_id:
            return reply
    raise RuntimeError("the reply consumer stopped")


def main() -> None:
    arguments = parse_arguments()
    try:
        code = asyncio.run(look_up(arguments.card_numbers, arguments.secondary, arguments.timeout_s))
    except SettingsError as exc:
        print(f"lookup: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()

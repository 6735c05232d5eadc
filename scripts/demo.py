"""Run the worker once on the built-in data: simulator, worker, sample requests, a table of replies.

Expects the local broker from `scripts/kafka start` (the `scripts/demo`
wrapper starts it). Everything this script starts, it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.testing import SimulatorProcess  # noqa: E402
from tests.harness import ReplyCollector, RequestSender, Topics, WorkerProcess  # noqa: E402
from worker.masking import mask_card_number  # noqa: E402

REPLY_TIMEOUT_S = 60.0
DETAIL_WIDTH = 60


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("requests", nargs="?", type=Path, default=ROOT / "examples" / "requests.jsonl",
                        help="file with one request per line (JSON), as producers would send them")
    parser.add_argument("--show-full-numbers", action="store_true",
                        help="print card numbers unmasked (the sample data is not real)")
    return parser.parse_args()


async def run(requests_path: Path, show_full_numbers: bool) -> int:
    lines = [line for line in requests_path.read_text().splitlines() if line.strip()]
    run_id = uuid.uuid4().hex[:6]
    topics = Topics.unique("demo")
    await topics.create(partitions=3)

    with SimulatorProcess() as simulator, tempfile.TemporaryDirectory() as scratch:
        worker = WorkerProcess(
            {**topics.worker_env(), "CARD_LOOKUP_API_BASE_URL": simulator.base_url},
            log_path=Path(scratch) / "worker.log",
        )
        print(f"simulator on {simulator.url}; starting the worker ...")
        worker.start()
        try:
            request_ids = await send(topics, lines, run_id)
            async with ReplyCollector(topics.replies) as replies, ReplyCollector(topics.dlq) as dead:
                missing = await replies.wait_for(request_ids, timeout_s=REPLY_TIMEOUT_S)
                await dead.poll(1.0)
            print_replies(replies, request_ids, run_id, show_full_numbers)
            print_dead_letters(dead)
            stats = simulator.stats()
            print(f"\n{len(request_ids) - len(missing)} of {len(request_ids)} requests answered, "
                  f"{len(dead.records)} dead letter(s), {stats['cards_calls']} GET /cards call(s) "
                  f"for {stats['card_numbers_requested']} card numbers.")
            return 1 if missing else 0
        finally:
            exit_code = worker.terminate()
            print(f"worker stopped with exit code {exit_code}")


async def send(topics: Topics, lines: list[str], run_id: str) -> list[str]:
    request_ids = []
    async with RequestSender(topics.requests) as sender:
        for number, line in enumerate(lines):
            try:
                document = json.loads(line)
            except ValueError:
                await sender.send(line.encode(), key=f"line-{number}".encode())
                continue
            if isinstance(document, dict) and "request_id" in document:
                document["request_id"] = f"{document['request_id']}-{run_id}"
                request_ids.append(document["request_id"])
            await sender.send(json.dumps(document).encode(), key=f"line-{number}".encode())
        await sender.flush()
    return request_ids


def print_replies(replies: ReplyCollector, request_ids: list[str], run_id: str, show_full_numbers: bool) -> None:
    show = (lambda number: number) if show_full_numbers else mask_card_number
    print(f"\n{'request':<14} {'reply':<9} {'card number':<18} {'result':<10} detail")
    print("-" * 90)
    for request_id in request_ids:
        label = request_id.removesuffix(f"-{run_id}")
        if request_id not in replies.by_request_id:
            print(f"{label:<14} {'(none)':<9}")
            continue
        reply = replies.reply(request_id)
        if reply["status"] == "rejected":
            print_row(label, "rejected", "", "", reply["error"]["message"])
            continue
        for result in reply["results"]:
            detail = describe(result)
            print_row(label, reply["status"], show(result["card_number"]), result["status"], detail)
            label = ""


def print_row(request: str, reply: str, card_number: str, result: str, detail: str) -> None:
    """Print one table row; a long detail wraps at word boundaries under its own column."""
    lines = textwrap.wrap(detail, DETAIL_WIDTH) or [""]
    print(f"{request:<14} {reply:<9} {card_number:<18} {result:<10} {lines[0]}")
    for line in lines[1:]:
        print(f"{'':<14} {'':<9} {'':<18} {'':<10} {line}")


def describe(result: dict) -> str:
    if result["status"] == "found":
        card = result["card"]
        state = "active" if card["is_active"] else "blocked"
        validity = "valid now" if card["is_valid_now"] else "outside validity"
        return f"{state}, {validity}, type {card['card_type_id'][:8]}"
    if result.get("error"):
        return result["error"]["message"]
    return ""


def print_dead_letters(dead: ReplyCollector) -> None:
    for record in dead.records:
        reason = record.headers.get("x-dlq-reason", b"").decode()
        print(f"dead letter: {record.value[:30]!r}:")
        print(textwrap.indent(textwrap.fill(reason, DETAIL_WIDTH + 20), "    "))


def main() -> None:
    arguments = parse_arguments()
    sys.exit(asyncio.run(run(arguments.requests, arguments.show_full_numbers)))


if __name__ == "__main__":
    main()

"""Baseline for the efficiency benchmark: the FastStream worker a user would write first.

One subscriber handles one message at a time and calls `GET /cards?card_number=...`
once per card number, with a bearer token from a single login at start, then
publishes one reply keyed like the request. No batching, no deduplication
across requests, no rate limiting.

    python -m bench.naive_worker --request-topic T --reply-topic R --group G --api-base-url URL
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httpx
from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaMessage

READY_LINE = "naive worker running"
API_TIMEOUT_S = 15.0
# The process exits on its own after this long, in case its parent dies
# without stopping it.
DEFAULT_MAX_RUNTIME_S = 900.0


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092", help="Kafka host:port list")
    parser.add_argument("--request-topic", required=True)
    parser.add_argument("--reply-topic", required=True)
    parser.add_argument("--group", required=True, help="Kafka consumer group id")
    parser.add_argument("--api-base-url", required=True, help="CareCloud API base URL, including the version segment")
    parser.add_argument("--application-id", default="simulator-app", help="user_external_application_id for the login")
    parser.add_argument("--login", default="simulator")
    parser.add_argument("--password", default="simulator")
    parser.add_argument("--max-runtime-s", type=float, default=DEFAULT_MAX_RUNTIME_S, help="exit after this many seconds")
    return parser.parse_args(argv)


def build_app(args: argparse.Namespace) -> FastStream:
    broker = KafkaBroker(args.bootstrap_servers)
    app = FastStream(broker)
    http = httpx.AsyncClient(base_url=args.api_base_url, timeout=API_TIMEOUT_S)
    auth_headers: dict[str, str] = {}

    @app.on_startup
    async def log_in() -> None:
        credentials = {"user_external_application_id": args.application_id, "login": args.login, "password": args.password}
        response = await http.post("/users/actions/login", json=credentials)
        response.raise_for_status()
        auth_headers["Authorization"] = "Bearer " + response.json()["data"]["bearer_token"]

    @app.after_startup
    async def announce() -> None:
        print(READY_LINE, flush=True)
        asyncio.get_running_loop().call_later(args.max_runtime_s, app.exit)

    @app.after_shutdown
    async def close_http() -> None:
        await http.aclose()

    @broker.subscriber(args.request_topic, group_id=args.group, auto_offset_reset="earliest")
    async def look_up_cards(body: dict[str, Any], message: KafkaMessage) -> None:
        results = []
        for card_number in body["card_numbers"]:
            response = await http.get("/cards", params={"card_number": card_number}, headers=auth_headers)
            response.raise_for_status()
            cards = response.json()["data"]["cards"]
            status = "found" if cards else "not_found"
            results.append({"card_number": card_number, "status": status, "card": cards[0] if cards else None})
        reply = {"request_id": body["request_id"], "status": "complete", "results": results}
        await broker.publish(reply, args.reply_topic, key=message.raw_message.key)

    return app


def main(argv: list[str] | None = None) -> None:
    asyncio.run(build_app(parse_arguments(argv)).run())


if __name__ == "__main__":
    main()

"""Command line: ``python -m simulator``.

Prints ``simulator listening on http://HOST:PORT`` to stdout once the server accepts
connections, so that a parent process can read the port chosen by ``--port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import uvicorn

from .app import create_app
from .auth import Credentials
from .data import DataError, load_data
from .faults import DEFAULT_STALL_MAX_S, DEFAULT_TOKEN_TTL_S, RETRY_AFTER_MODES, FaultSettingsError
from .state import Simulator

EXIT_USAGE = 2
LISTENING_MESSAGE = "simulator listening on"
# Seconds that a shutdown waits for calls in flight. Stalled calls would otherwise
# hold the process for up to stall_max_s.
GRACEFUL_SHUTDOWN_S = 2
# h11 rejects a request head larger than 16 KiB by default. A GET /cards with 1000
# card_number_list[] values has a query string of about 40 KB.
MAX_REQUEST_HEAD_BYTES = 1024 * 1024

logger = logging.getLogger("simulator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Serve a simulated CareCloud Enterprise API (login, cards, card types) with fault injection.",
    )
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    server.add_argument("--port", type=int, default=8080, help="TCP port; 0 picks a free port (default: %(default)s)")
    server.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    server.add_argument("--access-log", action="store_true", help="log every request (slows benchmarks)")

    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, help="JSON file with 'cards' and 'card_types' (default: the built-in data set)")
    data.add_argument(
        "--generate-cards",
        type=int,
        default=0,
        metavar="N",
        help="add N active cards numbered 9 followed by 12 digits of i, for i in 0..N-1 (default: 0)",
    )
    data.add_argument("--timezone", default="UTC", help="IANA time zone of the project's local times (default: UTC)")

    auth = parser.add_argument_group("credentials")
    auth.add_argument("--application-id", default=Credentials.application_id, help="user_external_application_id")
    auth.add_argument("--login", default=Credentials.login)
    auth.add_argument("--password", default=Credentials.password)

    faults = parser.add_argument_group("faults (all can be changed at runtime with POST /_simulator/faults)")
    faults.add_argument("--latency-ms", type=float, help="delay added to every API call, in ms")
    faults.add_argument("--latency-jitter-ms", type=float, help="random extra delay, uniform in [0, value] ms")
    faults.add_argument("--rate-limit-per-s", type=float, help="API calls allowed per second; calls over the rate get 429")
    faults.add_argument("--rate-limit-burst", type=int, help="token bucket size (default: the rate, at least 1)")
    faults.add_argument("--retry-after", choices=RETRY_AFTER_MODES, help="Retry-After form on 429 and 503 (default: seconds)")
    faults.add_argument("--retry-after-value", help="literal Retry-After value sent instead of the computed one")
    faults.add_argument("--unavailable-for-s", type=float, help="respond with 503 for this many seconds after start")
    faults.add_argument("--token-ttl-s", type=float, help=f"bearer token lifetime in s (default: {DEFAULT_TOKEN_TTL_S:g})")
    faults.add_argument("--stall", action="store_true", default=None, help="hold API calls until stall is set false")
    faults.add_argument("--stall-max-s", type=float, help=f"maximum stall wait before 503, in s (default: {DEFAULT_STALL_MAX_S:g})")
    faults.add_argument(
        "--cache-max-age-s", type=float, help="send Cache-Control: max-age with GET /cards answers, in s (default: 0, none)"
    )
    faults.add_argument("--fail-next-status", type=int, help="status for the next --fail-next-count API calls")
    faults.add_argument("--fail-next-count", type=int, default=1, help="calls that get --fail-next-status (default: 1)")
    faults.add_argument("--fail-next-retry-after", help="literal Retry-After value on the forced failures")
    faults.add_argument("--fail-next-include-login", action="store_true", help="force failures on login calls too")
    return parser


def fault_settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Return the fault settings given on the command line, in the control API's form."""
    names = (
        "latency_ms",
        "latency_jitter_ms",
        "rate_limit_per_s",
        "rate_limit_burst",
        "retry_after",
        "retry_after_value",
        "unavailable_for_s",
        "token_ttl_s",
        "stall",
        "stall_max_s",
        "cache_max_age_s",
    )
    settings = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.fail_next_status is not None:
        settings["fail_next"] = {
            "status": args.fail_next_status,
            "count": args.fail_next_count,
            "retry_after": args.fail_next_retry_after,
            "include_login": args.fail_next_include_login,
        }
    return settings


def build_simulator(args: argparse.Namespace) -> Simulator:
    """Create the simulator from parsed arguments. Raises ValueError with a message for the user."""
    if args.generate_cards < 0:
        raise ValueError(f"--generate-cards must be at least 0, got {args.generate_cards}")
    try:
        timezone = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--timezone {args.timezone!r} is not a known IANA time zone, e.g. Europe/Prague") from None

    try:
        store = load_data(args.data, generate_cards=args.generate_cards)
    except DataError as exc:
        raise ValueError(f"invalid data: {exc}") from exc

    credentials = Credentials(application_id=args.application_id, login=args.login, password=args.password)
    simulator = Simulator(store=store, credentials=credentials, timezone=timezone)
    try:
        simulator.faults.update(fault_settings_from_args(args))
    except FaultSettingsError as exc:
        option = "--" + exc.field.split(".")[0].replace("_", "-")
        raise ValueError(f"invalid fault option {option}: {exc.message}") from exc
    return simulator


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the listening line once its socket accepts connections."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"{LISTENING_MESSAGE} {self._url}", flush=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # asyncio sets TCP_NODELAY on accepted connections only when the protocol is
    # IPPROTO_TCP explicitly. Without it, Nagle's algorithm delays the response body
    # behind the headers until the client's delayed ACK, about 40 ms a call.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        simulator = build_simulator(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}"

    config = uvicorn.Config(
        create_app(simulator),
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
    )
    server = _AnnouncingServer(config, url)
    logger.info(
        "starting with %d cards and %d card types on %s", len(simulator.store.cards), len(simulator.store.card_types), url
    )
    asyncio.run(server.serve(sockets=[sock]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

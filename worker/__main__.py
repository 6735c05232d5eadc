"""Command-line entry point: `python -m worker` or `card-lookup-worker`.

The first SIGTERM or SIGINT starts a graceful stop (drain, publish, commit,
exit 0); a second one exits at once with status 130. While Kafka is
unreachable at start the worker retries with backoff and reports itself
unready; it exits with status 3 only if a Kafka client fails to start after
the first connection succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from aiokafka.errors import KafkaError

from worker.logs import configure_logging
from worker.runtime import Worker
from worker.settings import SettingsError, load_settings, unknown_variables

logger = logging.getLogger("worker")

EXIT_SETTINGS = 2
EXIT_KAFKA_START = 3
EXIT_SECOND_SIGNAL = 130


async def run(worker: Worker) -> None:
    app = worker.create_app()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(EXIT_SECOND_SIGNAL)
        logger.info("%s received: stopping gracefully", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    # The start waits for Kafka with backoff for as long as it takes, so a
    # signal must be able to end it too.
    starting = asyncio.ensure_future(app.start())
    stop_requested = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        logger.info("stopped before the worker finished starting")
        await app.stop()
        return
    stop_requested.cancel()
    try:
        starting.result()
        await stop.wait()
    finally:
        await app.stop()


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"card-lookup-worker: {exc}", file=sys.stderr)
        sys.exit(EXIT_SETTINGS)
    configure_logging(settings)
    for variable in unknown_variables():
        logger.warning("ignoring %s: no setting has this name; see docs/settings.md for the list", variable)
    try:
        asyncio.run(run(Worker(settings)))
    except KafkaError as exc:
        # Raised only when Kafka goes away between the admin client's
        # connection, which is retried, and the consumer's or producer's.
        logger.error("the worker could not start its Kafka clients: %r; exiting so it is restarted", exc)
        sys.exit(EXIT_KAFKA_START)


if __name__ == "__main__":
    main()

"""Command-line entry point: `python -m worker` or `card-lookup-worker`.

The first SIGTERM or SIGINT starts a graceful stop (drain, publish, commit,
exit 0); a second one exits at once with status 130.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from worker.logs import configure_logging
from worker.runtime import Worker
from worker.settings import SettingsError, load_settings

logger = logging.getLogger("worker")

EXIT_SETTINGS = 2
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

    await app.start()
    try:
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
    asyncio.run(run(Worker(settings)))


if __name__ == "__main__":
    main()

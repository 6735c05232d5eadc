"""The state shared by the API and the control API of one simulator instance."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from .auth import Credentials, TokenStore
from .data import DataStore
from .faults import FaultState
from .stats import Stats

LOCAL_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the API's datetime format, project local time


@dataclass
class Simulator:
    store: DataStore
    credentials: Credentials = field(default_factory=Credentials)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    faults: FaultState = field(default_factory=FaultState)
    stats: Stats = field(default_factory=Stats)
    # Wall-clock epoch seconds. Tokens use the same clock unless given their own store.
    clock: Callable[[], float] = time.time
    tokens: TokenStore | None = None

    def __post_init__(self) -> None:
        if self.tokens is None:
            self.tokens = TokenStore(self.clock)

    def local_now(self) -> datetime:
        """Return the current time in the project time zone, without tzinfo, as card validity uses it."""
        return self.to_local(self.clock())

    def to_local(self, epoch_s: float) -> datetime:
        return datetime.fromtimestamp(epoch_s, self.timezone).replace(tzinfo=None)

    def format_local(self, epoch_s: float) -> str:
        return self.to_local(epoch_s).strftime(LOCAL_DATETIME_FORMAT)

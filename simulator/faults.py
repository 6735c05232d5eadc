"""Fault injection: latency, a token-bucket rate limit, a 503 window, forced statuses and stalls.

`FaultState` decides for each API call whether it is rejected before it reaches the
endpoint, and how long it waits first. Every setting can be changed while the server
runs through `FaultState.update`, which takes the JSON object of the control API.
Time comes from injectable clocks so that unit tests can check exact waits.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

RETRY_AFTER_MODES = ("seconds", "date", "none")
FAIL_NEXT_STATUSES = (400, 403, 429, 500, 502, 503, 504)
DEFAULT_STALL_MAX_S = 300.0
DEFAULT_TOKEN_TTL_S = 7 * 3600.0  # the CareCloud default token lifetime

# Every setting at its default, in the form that FaultState.update accepts.
DEFAULT_FAULTS: dict[str, Any] = {
    "latency_ms": 0.0,
    "latency_jitter_ms": 0.0,
    "rate_limit_per_s": None,
    "rate_limit_burst": None,
    "retry_after": "seconds",
    "retry_after_value": None,
    "unavailable_for_s": 0.0,
    "fail_next": None,
    "token_ttl_s": DEFAULT_TOKEN_TTL_S,
    "stall": False,
    "stall_max_s": DEFAULT_STALL_MAX_S,
    "cache_max_age_s": 0.0,
}


class FaultSettingsError(ValueError):
    """Raised when a fault setting is unknown or has an invalid value. ``field`` names the setting."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TokenBucket:
    """A token bucket that refills ``rate_per_s`` tokens a second up to ``burst`` tokens.

    It starts full. ``clock`` returns monotonic seconds.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def try_acquire(self) -> float:
        """Take one token and return 0.0, or return the seconds until a token is available."""
        now = self._clock()
        elapsed = now - self._updated
        self._updated = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s


@dataclass(frozen=True)
class FailNext:
    """Forces ``count`` more API calls to get ``status``, with a literal Retry-After header if set."""

    status: int
    count: int
    retry_after: str | None = None
    include_login: bool = False


@dataclass(frozen=True)
class Rejection:
    """A status that the fault layer returns in place of the endpoint response, with extra headers."""

    status: int
    headers: dict[str, str]
    detail: str


class FaultState:
    """Current fault settings and the state they need (bucket, window end, remaining forced failures)."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()

        self.latency_ms = 0.0
        self.latency_jitter_ms = 0.0
        self.rate_limit_per_s: float | None = None
        self.rate_limit_burst: int | None = None
        self.retry_after = "seconds"
        self.retry_after_value: str | None = None
        self._unavailable_until: float | None = None
        self.fail_next: FailNext | None = None
        self.token_ttl_s = DEFAULT_TOKEN_TTL_S
        self.stall_max_s = DEFAULT_STALL_MAX_S
        # `Cache-Control: max-age` on GET /cards answers; 0 sends no header.
        self.cache_max_age_s = 0.0
        self._bucket: TokenBucket | None = None
        # Set while calls may proceed. Cleared while the API is stalled.
        self._not_stalled = asyncio.Event()
        self._not_stalled.set()

    # Settings

    @property
    def stall(self) -> bool:
        return not self._not_stalled.is_set()

    def unavailable_remaining_s(self) -> float:
        if self._unavailable_until is None:
            return 0.0
        return max(0.0, self._unavailable_until - self._monotonic())

    def as_dict(self) -> dict[str, Any]:
        """Return the settings in the form that `update` accepts."""
        fail_next = None
        if self.fail_next is not None:
            fail_next = {
                "status": self.fail_next.status,
                "count": self.fail_next.count,
                "retry_after": self.fail_next.retry_after,
                "include_login": self.fail_next.include_login,
            }
        return {
            "latency_ms": self.latency_ms,
            "latency_jitter_ms": self.latency_jitter_ms,
            "rate_limit_per_s": self.rate_limit_per_s,
            "rate_limit_burst": self._effective_burst() if self.rate_limit_per_s else self.rate_limit_burst,
            "retry_after": self.retry_after,
            "retry_after_value": self.retry_after_value,
            "unavailable_for_s": round(self.unavailable_remaining_s(), 3),
            "fail_next": fail_next,
            "token_ttl_s": self.token_ttl_s,
            "stall": self.stall,
            "stall_max_s": self.stall_max_s,
            "cache_max_age_s": self.cache_max_age_s,
        }

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update. Validates every field before changing any.

        Raises FaultSettingsError naming the first unknown or invalid field.
        """
        parsed: dict[str, Any] = {}
        for field, value in changes.items():
            parser = _FIELD_PARSERS.get(field)
            if parser is None:
                raise FaultSettingsError(field, f"unknown fault setting; known settings: {', '.join(_FIELD_PARSERS)}")
            parsed[field] = parser(field, value)

        for field, value in parsed.items():
            if field == "unavailable_for_s":
                self._unavailable_until = self._monotonic() + value if value > 0 else None
            elif field == "stall":
                self._set_stall(value)
            else:
                setattr(self, field, value)
        if "rate_limit_per_s" in parsed or "rate_limit_burst" in parsed:
            self._rebuild_bucket()

    def _effective_burst(self) -> int:
        if self.rate_limit_burst is not None:
            return self.rate_limit_burst
        return max(1, math.ceil(self.rate_limit_per_s or 1))

    def _rebuild_bucket(self) -> None:
        if not self.rate_limit_per_s:
            self._bucket = None
            return
        self._bucket = TokenBucket(self.rate_limit_per_s, self._effective_burst(), self._monotonic)

    def _set_stall(self, stall: bool) -> None:
        if stall:
            self._not_stalled.clear()
        else:
            self._not_stalled.set()

    # Per-call decisions

    def check(self, *, is_login: bool) -> Rejection | None:
        """Decide at arrival whether a call is rejected: 503 window, then rate limit, then fail_next."""
        unavailable_s = self.unavailable_remaining_s()
        if unavailable_s > 0:
            return Rejection(503, self._retry_after_headers(unavailable_s), "The service is unavailable.")

        if self._bucket is not None:
            wait_s = self._bucket.try_acquire()
            if wait_s > 0:
                return Rejection(429, self._retry_after_headers(wait_s), "Too many requests.")

        fail_next = self.fail_next
        if fail_next is not None and (fail_next.include_login or not is_login):
            remaining = fail_next.count - 1
            self.fail_next = FailNext(fail_next.status, remaining, fail_next.retry_after, fail_next.include_login)
            if remaining <= 0:
                self.fail_next = None
            headers = {} if fail_next.retry_after is None else {"retry-after": fail_next.retry_after}
            return Rejection(fail_next.status, headers, "Failure injected by fail_next.")
        return None

    def _retry_after_headers(self, wait_s: float) -> dict[str, str]:
        if self.retry_after_value is not None:
            return {"retry-after": self.retry_after_value}
        if self.retry_after == "none":
            return {}
        # Delta-seconds is an integer (RFC 9110, section 10.2.3): round up so a client
        # that waits that long finds a token, and never send 0.
        delay_s = max(1, math.ceil(wait_s))
        if self.retry_after == "date":
            return {"retry-after": formatdate(self._wall_clock() + delay_s, usegmt=True)}
        return {"retry-after": str(delay_s)}

    async def wait_for_stall(self) -> Rejection | None:
        """Wait while the API is stalled. Returns a 503 rejection if the stall outlasts stall_max_s."""
        if self._not_stalled.is_set():
            return None
        try:
            await asyncio.wait_for(self._not_stalled.wait(), timeout=self.stall_max_s)
        except TimeoutError:
            return Rejection(503, {}, f"The call stalled for longer than stall_max_s ({self.stall_max_s} s).")
        return None

    async def wait_latency(self) -> None:
        """Sleep for latency_ms plus a uniform random extra of up to latency_jitter_ms."""
        delay_ms = self.latency_ms
        if self.latency_jitter_ms > 0:
            delay_ms += self._rng.uniform(0.0, self.latency_jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)


# Validation of each setting, used by the control API and the command line.


def _number(field: str, value: Any, *, minimum: float = 0.0, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FaultSettingsError(field, f"must be a number, got {value!r}")
    if value < minimum or (not allow_zero and value == 0):
        bound = f"greater than {minimum:g}" if not allow_zero else f"at least {minimum:g}"
        raise FaultSettingsError(field, f"must be {bound}, got {value!r}")
    return float(value)


def _parse_non_negative(field: str, value: Any) -> float:
    return _number(field, value)


def _parse_positive(field: str, value: Any) -> float:
    return _number(field, value, allow_zero=False)


def _parse_rate(field: str, value: Any) -> float | None:
    """Parse rate_limit_per_s; null or 0 turns the rate limit off."""
    if value is None or value == 0:
        return None
    return _number(field, value, allow_zero=False)


def _parse_burst(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FaultSettingsError(field, f"must be an integer of at least 1 or null, got {value!r}")
    return value


def _parse_retry_after_mode(field: str, value: Any) -> str:
    if value not in RETRY_AFTER_MODES:
        raise FaultSettingsError(field, f"must be one of {', '.join(RETRY_AFTER_MODES)}, got {value!r}")
    return value


def _parse_optional_header(field: str, value: Any) -> str | None:
    if value is None:
        return None
    # A header value must be printable ASCII to reach the client unchanged.
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        raise FaultSettingsError(field, f"must be a printable ASCII string or null, got {value!r}")
    return value


def _parse_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FaultSettingsError(field, f"must be true or false, got {value!r}")
    return value


def _parse_fail_next(field: str, value: Any) -> FailNext | None:
    """Parse {"status", "count", "retry_after", "include_login"}; null or count 0 clears it."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FaultSettingsError(field, f"must be an object or null, got {value!r}")
    unknown = sorted(set(value) - {"status", "count", "retry_after", "include_login"})
    if unknown:
        raise FaultSettingsError(f"{field}.{unknown[0]}", "unknown key; known keys: status, count, retry_after, include_login")

    status = value.get("status")
    if status not in FAIL_NEXT_STATUSES or isinstance(status, bool):
        allowed = ", ".join(str(code) for code in FAIL_NEXT_STATUSES)
        raise FaultSettingsError(f"{field}.status", f"must be one of {allowed}, got {status!r}")
    count = value.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise FaultSettingsError(f"{field}.count", f"must be an integer of at least 0, got {count!r}")
    retry_after = _parse_optional_header(f"{field}.retry_after", value.get("retry_after"))
    include_login = _parse_bool(f"{field}.include_login", value.get("include_login", False))
    if count == 0:
        return None
    return FailNext(status, count, retry_after, include_login)


_FIELD_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "latency_ms": _parse_non_negative,
    "latency_jitter_ms": _parse_non_negative,
    "rate_limit_per_s": _parse_rate,
    "rate_limit_burst": _parse_burst,
    "retry_after": _parse_retry_after_mode,
    "retry_after_value": _parse_optional_header,
    "unavailable_for_s": _parse_non_negative,
    "fail_next": _parse_fail_next,
    "token_ttl_s": _parse_positive,
    "stall": _parse_bool,
    "stall_max_s": _parse_positive,
    "cache_max_age_s": _parse_non_negative,
}
FAULT_FIELDS = tuple(_FIELD_PARSERS)

"""Logging setup: JSON lines by default, plain text for local runs.

Both formats carry the fields a call passes as `extra=` (topic, partition,
offset, request_id, endpoint, status, duration_s), and the trace and span ids
when tracing is on. Three filters sit on the handler:

- `RedactingFilter` masks long alphanumeric tokens containing digits in text
  that comes from outside the worker (exception messages and tracebacks),
  because an API error or a validation error may echo a card number.
- `RepeatFilter` lets a burst of the same warning through, then counts the
  repeats and reports the count on the next one that passes.
- `TraceContextFilter` adds `trace_id` and `span_id` of the active span.

Secrets (API password, bearer token, SASL password) are never passed to a log
call: settings hold them as `SecretStr` and the client never logs headers.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from worker.masking import mask_card_number
from worker.settings import LogFormat, Settings

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_RENAMED_FIELDS = {"asctime": "time", "levelname": "level", "name": "logger"}

# Runs of letters and digits at least this long that contain a digit are
# masked in outside text. Card numbers of the API are 8 characters or longer.
# NOTE: a shorter card number, or one written with spaces or dashes between
# groups, passes through unmasked.
REDACT_MIN_LENGTH = 8
_TOKEN = re.compile(rf"[A-Za-z0-9]{{{REDACT_MIN_LENGTH},}}")

# The same warning (logger and message template) passes this many times per
# window; the rest of the window is counted, not written.
REPEAT_BURST = 10
REPEAT_WINDOW_S = 10.0

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """Mask every long alphanumeric token containing a digit down to its last 4 characters."""
    return _TOKEN.sub(_mask_token, text)


def _mask_token(match: re.Match[str]) -> str:
    token = match.group()
    if not any(character.isdigit() for character in token):
        return token
    return mask_card_number(token)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the fields a log call added with `extra=`, in the order it added them."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRIBUTES}


class RedactingFilter(logging.Filter):
    """Masks card-number-like tokens in exception arguments, tracebacks and stack info."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, BaseException) for arg in record.args):
            record.args = tuple(redact(str(arg)) if isinstance(arg, BaseException) else arg for arg in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            # The formatters print exc_text; keeping exc_info would print the raw traceback again.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# aiokafka logs every failed connection attempt at ERROR, in a tight loop
# while a broker is down (thousands of lines per outage with aiokafka 0.14),
# so its errors are rate-limited like warnings.
NOISY_ERROR_LOGGERS = ("aiokafka",)


class RepeatFilter(logging.Filter):
    """Rate-limits repeated warnings (and noisy libraries' errors): `burst` per `window_s` per logger and template."""

    def __init__(
        self,
        *,
        burst: int = REPEAT_BURST,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._burst = burst
        self._window_s = window_s
        self._clock = clock
        # (logger, template) -> [window start, passed in window, suppressed in window]
        self._windows: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        noisy_error = record.levelno == logging.ERROR and record.name.startswith(NOISY_ERROR_LOGGERS)
        if record.levelno != logging.WARNING and not noisy_error:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self._window_s:
            suppressed = int(window[2]) if window else 0
            self._windows[key] = [now, 1, 0]
            if suppressed:
                record.suppressed_repeats = suppressed
            self._forget_old(now)
            return True
        if window[1] < self._burst:
            window[1] += 1
            return True
        window[2] += 1
        return False

    def _forget_old(self, now: float) -> None:
        # Bounded memory: windows idle for two lengths carry no suppressed count worth keeping.
        if len(self._windows) > 1000:
            for key, window in list(self._windows.items()):
                if now - window[0] >= 2 * self._window_s:
                    del self._windows[key]


class TraceContextFilter(logging.Filter):
    """Adds `trace_id` and `span_id` (hex) of the active OpenTelemetry span, when there is one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            from opentelemetry import trace
        except ImportError:
            return True
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class UtcJsonFormatter(JsonFormatter):
    """JSON lines with the time in ISO 8601, UTC, to the millisecond."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return _iso_time(record.created)


class TextFormatter(logging.Formatter):
    """One line per record: time, level, logger, message, then the extra fields as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return _iso_time(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        return line


def _text_value(value: object) -> str:
    text = str(value)
    if text == "" or any(character.isspace() or character in "\"=" for character in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _iso_time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler with the worker's formatter and filters."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format is LogFormat.JSON:
        handler.setFormatter(UtcJsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMED_FIELDS))
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(RepeatFilter())
    handler.addFilter(RedactingFilter())
    handler.addFilter(TraceContextFilter())
    return handler


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    root = logging.getLogger()
    root.handlers[:] = [build_handler(settings.log_format, stream)]
    root.setLevel(settings.log_level)
    # FastStream logs every processed batch at INFO; keep it to warnings.
    logging.getLogger("faststream").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    # httpx logs each request URL at INFO, and a GET /cards URL carries card numbers.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)

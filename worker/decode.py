"""Decode Kafka records into lookup requests.

A record ends in one of three ways:

- `Request`: a request the worker looks up (some of its card numbers may be
  `invalid`, which is answered per card);
- `Rejection`: a JSON object that is not a valid request but names a request
  id or correlation id, so the requester gets a `rejected` reply;
- `DeadLetter`: anything that cannot be answered (not JSON, not an object,
  too large, no id to answer to, an unusable `reply_to`), sent to the
  dead-letter topic with the reason.

`decode_record` never raises for bad input: every failure becomes one of the
values above.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.requests import LookupRequest

# FastStream's request/reply convention: header names used by its producers.
CORRELATION_ID_HEADER = "correlation_id"
REPLY_TO_HEADER = "reply_to"

# Kafka's own rule for topic names (org.apache.kafka.common.internals.Topic):
# 1 to 249 of these characters, and neither "." nor "..".
_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_RESERVED_TOPIC_NAMES = (".", "..")

# Deeply nested values give field paths of thousands of characters; the reason
# goes into a reply and a header, so each path is cut to this length.
MAX_ERROR_LOCATION_CHARS = 200


@dataclass(frozen=True)
class CardEntry:
    """One distinct card number of a request, in request order."""

    card_number: str
    invalid_reason: str | None = None


@dataclass(frozen=True)
class Request:
    request_id: str
    correlation_id: str | None
    reply_topic: str
    card_entries: tuple[CardEntry, ...]
    search_secondary: bool
    deadline_ms: int | None

    @property
    def valid_card_numbers(self) -> list[str]:
        return [entry.card_number for entry in self.card_entries if entry.invalid_reason is None]


@dataclass(frozen=True)
class Rejection:
    request_id: str
    correlation_id: str | None
    reply_topic: str
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    reason: str


Decoded = Request | Rejection | DeadLetter


@dataclass(frozen=True)
class DecodeLimits:
    max_request_bytes: int
    card_number_max_length: int
    default_reply_topic: str


def decode_record(
    value: bytes | None,
    headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...],
    limits: DecodeLimits,
) -> Decoded:
    """Turn one record's value and headers into a request, a rejection or a dead letter."""
    header_values, header_problem = _read_headers(headers)
    if header_problem:
        return DeadLetter(header_problem)

    if value is None or len(value) == 0:
        return DeadLetter("the message has no value; send a JSON object with `card_numbers`")
    if len(value) > limits.max_request_bytes:
        return DeadLetter(
            f"the message has {len(value)} bytes, over the limit of {limits.max_request_bytes}; "
            "split the card numbers into smaller requests"
        )

    try:
        document = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        return DeadLetter(f"the message is not valid UTF-8 JSON ({exc}); send a JSON object")
    except RecursionError:
        return DeadLetter("the message nests JSON too deeply to decode; send a flat JSON object")
    if not isinstance(document, dict):
        return DeadLetter(f"the message is JSON {type(document).__name__}, not an object; send a JSON object")

    correlation_id = header_values.get(CORRELATION_ID_HEADER) or None
    reply_topic = header_values.get(REPLY_TO_HEADER) or limits.default_reply_topic
    if not _TOPIC_NAME.match(reply_topic) or reply_topic in _RESERVED_TOPIC_NAMES:
        return DeadLetter(
            f"the reply_to header {reply_topic[:100]!r} is not a valid Kafka topic name; "
            "use letters, digits, '.', '_' and '-' (at most 249)"
        )

    raw_request_id = document.get("request_id")
    request_id = raw_request_id if isinstance(raw_request_id, str) and raw_request_id else correlation_id
    if request_id is not None and not _encodable(request_id):
        # JSON may escape a lone surrogate ("\\ud800"); such an id cannot be
        # written back into a UTF-8 reply, so no reply can carry it.
        return DeadLetter("the request_id contains a lone UTF-16 surrogate escape; send it as valid Unicode text")

    try:
        request = LookupRequest.model_validate(document)
    except ValidationError as exc:
        reason = f"invalid request: {describe_errors(exc)}"
        if request_id is None:
            return DeadLetter(f"{reason}; the message has no request_id or correlation id to reply to")
        return Rejection(request_id[:256], correlation_id, reply_topic, reason)

    if request_id is None:
        return DeadLetter(
            "the request has no request_id and the message has no correlation_id header; "
            "set one of them so the reply can be matched"
        )

    entries = _card_entries(request.card_numbers, limits.card_number_max_length)
    return Request(
        request_id=request_id,
        correlation_id=correlation_id,
        reply_topic=reply_topic,
        card_entries=entries,
        search_secondary=request.search_secondary_card_number,
        deadline_ms=request.deadline_ms,
    )


def describe_errors(exc: ValidationError) -> str:
    """Summarise pydantic errors as `field: message` pairs, without echoing large inputs."""
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(part) for part in error["loc"]) or "message"
        if len(location) > MAX_ERROR_LOCATION_CHARS:
            location = location[:MAX_ERROR_LOCATION_CHARS] + "..."
        parts.append(f"{location}: {error['msg']}")
    if len(exc.errors()) > 5:
        parts.append(f"and {len(exc.errors()) - 5} more")
    return "; ".join(parts)


def check_card_number(value: str, max_length: int) -> str | None:
    """Return why `value` cannot be a card number, or None when it can."""
    if value == "":
        return "the card number is empty"
    if value.strip() == "":
        return "the card number is only whitespace"
    if value != value.strip():
        return "the card number has leading or trailing whitespace; strip it before sending"
    if len(value) > max_length:
        return f"the card number has {len(value)} characters, over the limit of {max_length}"
    for character in value:
        if unicodedata.category(character) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return f"the card number contains the control or unassigned character U+{ord(character):04X}"
    return None


def _card_entries(values: list[object], max_length: int) -> tuple[CardEntry, ...]:
    entries: list[CardEntry] = []
    seen: set[tuple[str, str]] = set()
    for value in values:
        card_number, reason = _card_number_from_json(value, max_length)
        # A string and an integer with the same digits name one card number.
        # Other JSON values are only shown as text, so `null` must not hide
        # the string "null".
        if isinstance(value, str):
            identity = ("card", value)
        elif isinstance(value, int) and not isinstance(value, bool):
            identity = ("card", card_number)
        else:
            identity = ("json", card_number)
        if identity in seen:
            continue
        seen.add(identity)
        entries.append(CardEntry(card_number, reason))
    return tuple(entries)


def _card_number_from_json(value: object, max_length: int) -> tuple[str, str | None]:
    # bool is a subclass of int: test it first so `true` is not read as "1".
    if isinstance(value, bool) or value is None:
        return json.dumps(value), f"expected a string, got JSON {json.dumps(value)}; send card numbers as strings"
    if isinstance(value, int):
        # Lossless: the decimal digits of a JSON integer. Leading zeros cannot
        # be written as a JSON number, so nothing is lost here.
        text = str(value)
        return text, check_card_number(text, max_length)
    if isinstance(value, str):
        if not _encodable(value):
            # Shown with the surrogate escaped, because the reply must be UTF-8.
            shown = value.encode("utf-8", "backslashreplace").decode("utf-8")
            return shown, "the card number contains a lone UTF-16 surrogate escape; send valid Unicode text"
        return value, check_card_number(value, max_length)
    shown = _json_excerpt(value)
    kind = "number with a fraction or exponent" if isinstance(value, float) else type(value).__name__
    return shown, f"expected a string, got a JSON {kind}; send card numbers as strings"


def _json_excerpt(value: object) -> str:
    """Return the first 100 characters of `value` as JSON, for showing a wrong value in a reply."""
    try:
        return json.dumps(value)[:100]
    except RecursionError:
        # The document decoded but nests too deeply to encode again this far down the stack.
        return f"(a deeply nested JSON {type(value).__name__})"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_headers(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> tuple[dict[str, str], str | None]:
    values: dict[str, str] = {}
    for name, raw in headers or ():
        if name not in (CORRELATION_ID_HEADER, REPLY_TO_HEADER):
            continue
        if raw is None:
            continue
        try:
            values[name] = raw.decode("utf-8")
        except (UnicodeDecodeError, AttributeError):
            return values, f"the {name} header is not UTF-8 text; send it as a UTF-8 string"
    return values, None

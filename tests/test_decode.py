"""Unit tests of `decode_record` for the poison inputs the delivery tests send."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import pytest

from worker.assemble import assemble_reply, rejected_reply
from worker.decode import DeadLetter, DecodeLimits, Rejection, Request, decode_record

LIMITS = DecodeLimits(max_request_bytes=2048, card_number_max_length=64, default_reply_topic="replies")


def decode(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> object:
    return decode_record(value, headers or [], LIMITS)


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        (None, "no value"),
        (b"", "no value"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8 JSON"),
        (b"{not json", "not valid UTF-8 JSON"),
        (b"[1, 2]", "not an object"),
        (b'"text"', "not an object"),
        (b"1" * 5000, "over the limit of 2048"),
        (b'{"card_numbers": ["1"]}', "no request_id"),
        (b'{"request_id": 7, "card_numbers": ["1"]}', "no request_id"),
        (b"[" * 5000 + b"]" * 5000, "over the limit"),
    ],
    ids=["none", "empty", "binary", "broken-json", "array", "string", "too-large", "no-id", "id-not-string", "deep"],
)
def test_unanswerable_values_dead_lettered(value, reason_part):
    decoded = decode(value)

    assert isinstance(decoded, DeadLetter)
    assert reason_part in decoded.reason


def test_deep_nesting_within_limit_dead_lettered():
    limits = DecodeLimits(max_request_bytes=100_000, card_number_max_length=64, default_reply_topic="replies")

    decoded = decode_record(b"[" * 20_000 + b"]" * 20_000, [], limits)

    assert isinstance(decoded, DeadLetter)
    assert "too deeply" in decoded.reason


@pytest.mark.parametrize(
    "headers",
    [
        [("reply_to", b"\xff\xfe")],
        [("correlation_id", b"\xc3\x28")],
    ],
    ids=["reply-to", "correlation-id"],
)
def test_non_utf8_header_dead_lettered(headers):
    decoded = decode(b'{"request_id": "r", "card_numbers": ["1"]}', headers)

    assert isinstance(decoded, DeadLetter)
    assert "not UTF-8" in decoded.reason


@pytest.mark.parametrize("topic", [".", "..", "has space", "a" * 250, "slash/name", "ünïcode"])
def test_illegal_reply_to_dead_lettered(topic):
    decoded = decode(b'{"request_id": "r", "card_numbers": ["1"]}', [("reply_to", topic.encode())])

    assert isinstance(decoded, DeadLetter)
    assert "not a valid Kafka topic name" in decoded.reason


def test_legal_reply_to_kept():
    decoded = decode(b'{"request_id": "r", "card_numbers": ["1"]}', [("reply_to", b"team.replies-2_x")])

    assert isinstance(decoded, Request)
    assert decoded.reply_topic == "team.replies-2_x"


@pytest.mark.parametrize(
    "document",
    [
        {"request_id": "r", "card_numbers": "1000000000016"},
        {"request_id": "r", "card_numbers": []},
        {"request_id": "r", "card_numbers": {"a": 1}},
        {"request_id": "r", "card_numbers": ["1"], "deadline_ms": "100"},
        {"request_id": "r", "card_numbers": ["1"], "deadline_ms": 10**30},
        {"request_id": "r", "card_numbers": ["1"], "search_secondary_card_number": "yes"},
        {"request_id": "r"},
    ],
    ids=["numbers-string", "numbers-empty", "numbers-object", "deadline-string", "deadline-huge", "secondary-string", "numbers-missing"],
)
def test_wrong_types_rejected_with_reason(document):
    decoded = decode(json.dumps(document).encode())

    assert isinstance(decoded, Rejection)
    assert decoded.request_id == "r"
    assert decoded.reason.startswith("invalid request: ")


def test_surrogate_request_id_dead_lettered():
    decoded = decode(b'{"request_id": "a\\ud800", "card_numbers": ["1"]}')

    assert isinstance(decoded, DeadLetter)
    assert "surrogate" in decoded.reason


def test_surrogate_card_number_answered_invalid():
    decoded = decode(b'{"request_id": "r", "card_numbers": ["x\\udc00", "x"]}')

    assert isinstance(decoded, Request)
    assert [entry.card_number for entry in decoded.card_entries] == ["x\\udc00", "x"]
    assert "surrogate" in (decoded.card_entries[0].invalid_reason or "")
    assert decoded.card_entries[1].invalid_reason is None
    assemble_reply(decoded, {}, timezone=ZoneInfo("UTC")).model_dump_json()


def test_null_does_not_hide_string_null():
    decoded = decode(b'{"request_id": "r", "card_numbers": [null, "null", 1.5, "1.5", true, "true"]}')

    assert isinstance(decoded, Request)
    entries = [(entry.card_number, entry.invalid_reason is None) for entry in decoded.card_entries]
    assert entries == [("null", False), ("null", True), ("1.5", False), ("1.5", True), ("true", False), ("true", True)]


def test_integer_and_same_digits_merge():
    decoded = decode(b'{"request_id": "r", "card_numbers": [1000000000016, "1000000000016", "0001"]}')

    assert isinstance(decoded, Request)
    assert [entry.card_number for entry in decoded.card_entries] == ["1000000000016", "0001"]


def test_rejection_reason_stays_short():
    document = b'{"request_id": "r", "card_numbers": [' + b"[" * 900 + b"]" * 900 + b"]}"
    limits = DecodeLimits(max_request_bytes=100_000, card_number_max_length=64, default_reply_topic="replies")

    decoded = decode_record(document, [], limits)

    assert isinstance(decoded, Rejection)
    assert len(decoded.reason) < 2000
    rejected_reply(decoded).model_dump_json()


def test_correlation_id_answers_request_without_id():
    decoded = decode(b'{"card_numbers": ["1"]}', [("correlation_id", b"corr-1")])

    assert isinstance(decoded, Request)
    assert decoded.request_id == "corr-1"
    assert decoded.correlation_id == "corr-1"

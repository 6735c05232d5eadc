"""Property tests of `decode_record`: any bytes, any JSON, any headers end as a value, never an exception.

Each decoded value is also turned into the reply the pipeline would publish
and serialized, because a value that decodes but cannot be written back as
UTF-8 JSON would leave its record unanswered.
"""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.assemble import assemble_reply, rejected_reply
from worker.decode import DeadLetter, DecodeLimits, Rejection, Request, decode_record

LIMITS = DecodeLimits(max_request_bytes=64 * 1024, card_number_max_length=64, default_reply_topic="replies")
UTC = ZoneInfo("UTC")

# Every character, lone surrogates and control characters included; json.dumps
# writes a surrogate as a "\udXXX" escape, as a hostile producer could.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**80), max_value=10**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5),
    max_leaves=30,
)
header_names = st.sampled_from(["correlation_id", "reply_to", "content-type", "x-other"])
headers = st.lists(st.tuples(header_names, st.binary(max_size=300) | st.none()), max_size=4)


def request_documents() -> st.SearchStrategy[dict[str, object]]:
    """Request-shaped objects where every field may hold a value of any type, or be missing."""
    card_numbers = st.lists(json_values, max_size=12) | json_values
    return st.fixed_dictionaries(
        {},
        optional={
            "request_id": any_text | json_values,
            "card_numbers": card_numbers,
            "search_secondary_card_number": st.booleans() | json_values,
            "deadline_ms": st.integers(min_value=-(10**20), max_value=10**20) | json_values,
            "extra": json_values,
        },
    )


def encode(document: object) -> bytes:
    return json.dumps(document, allow_nan=True).encode()


def check_decoded(decoded: object) -> None:
    assert isinstance(decoded, (Request, Rejection, DeadLetter)), f"unexpected result {decoded!r}"
    if isinstance(decoded, Request):
        assemble_reply(decoded, {}, timezone=UTC).model_dump_json(exclude_none=True)
    elif isinstance(decoded, Rejection):
        assert decoded.reason
        rejected_reply(decoded).model_dump_json(exclude_none=True)
    else:
        assert decoded.reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.binary(max_size=2000) | st.none(), record_headers=headers)
def test_random_bytes_never_raise(value, record_headers):
    check_decoded(decode_record(value, record_headers, LIMITS))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=json_values, record_headers=headers)
def test_random_json_never_raises(document, record_headers):
    check_decoded(decode_record(encode(document), record_headers, LIMITS))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=request_documents(), record_headers=headers)
def test_request_shaped_json_never_raises(document, record_headers):
    check_decoded(decode_record(encode(document), record_headers, LIMITS))


@settings(max_examples=300, deadline=None)
@given(numbers=st.lists(st.text(max_size=30), min_size=1, max_size=50))
def test_distinct_strings_kept_exactly(numbers):
    decoded = decode_record(encode({"request_id": "r", "card_numbers": numbers}), [], LIMITS)

    assert isinstance(decoded, Request)
    assert [entry.card_number for entry in decoded.card_entries] == list(dict.fromkeys(numbers))


def is_unicode_text(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(values=st.lists(any_text | json_scalars, min_size=1, max_size=30))
def test_mixed_values_keep_every_string(values):
    decoded = decode_record(encode({"request_id": "r", "card_numbers": values}), [], LIMITS)

    assert isinstance(decoded, Request)
    entry_numbers = [entry.card_number for entry in decoded.card_entries]
    strings = list(dict.fromkeys(value for value in values if is_unicode_text(value)))
    positions = [entry_numbers.index(text) for text in strings if text in entry_numbers]
    assert len(positions) == len(strings), f"strings {strings!r} are not all among the entries {entry_numbers!r}"
    assert positions == sorted(positions), f"strings {strings!r} changed order in {entry_numbers!r}"
    assert len(entry_numbers) <= len(values)

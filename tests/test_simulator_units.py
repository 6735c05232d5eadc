"""Simulator parts tested in process with fake clocks: token bucket, faults, tokens, data, parsing."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import pytest

from simulator.auth import PRUNE_THRESHOLD, Credentials, TokenStore
from simulator.data import (
    CardQuery,
    DataError,
    generated_card_number,
    generated_secondary_card_number,
    load_data,
)
from simulator.faults import DEFAULT_FAULTS, FaultSettingsError, FaultState, TokenBucket
from simulator.params import parse_accept_language, parse_query_string
from simulator.state import Simulator
from simulator.stats import Stats


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Token bucket


def test_bucket_starts_full() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)

    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.5)


def test_bucket_refills_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=4.0, burst=1, clock=clock)
    bucket.try_acquire()

    clock.advance(0.125)
    assert bucket.try_acquire() == pytest.approx(0.125)
    clock.advance(0.125)
    assert bucket.try_acquire() == 0.0


def test_bucket_never_exceeds_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10.0, burst=2, clock=clock)

    clock.advance(60)

    assert [bucket.try_acquire() for _ in range(2)] == [0.0, 0.0]
    assert bucket.try_acquire() > 0


# Fault decisions


def make_faults(**settings: object) -> tuple[FaultState, FakeClock, FakeClock]:
    monotonic = FakeClock(500.0)
    wall_clock = FakeClock(1_800_000_000.0)
    faults = FaultState(monotonic=monotonic, wall_clock=wall_clock)
    faults.update(settings)
    return faults, monotonic, wall_clock


def test_defaults_match_default_faults() -> None:
    assert FaultState().as_dict() == DEFAULT_FAULTS


def test_no_faults_accept_every_call() -> None:
    faults, _, _ = make_faults()

    assert all(faults.check(is_login=False) is None for _ in range(100))


def test_rate_limit_retry_after_rounds_up() -> None:
    faults, monotonic, _ = make_faults(rate_limit_per_s=0.4, rate_limit_burst=1)
    assert faults.check(is_login=False) is None

    monotonic.advance(0.2)
    rejection = faults.check(is_login=False)

    assert rejection is not None
    assert rejection.status == 429
    # 1 token at 0.4/s takes 2.5 s, of which 0.2 s have passed.
    assert rejection.headers == {"retry-after": "3"}


def test_rate_limit_retry_after_at_least_one() -> None:
    faults, _, _ = make_faults(rate_limit_per_s=1000, rate_limit_burst=1)
    faults.check(is_login=False)

    rejection = faults.check(is_login=False)

    assert rejection is not None
    assert rejection.headers == {"retry-after": "1"}


def test_rate_limit_retry_after_date() -> None:
    faults, _, wall_clock = make_faults(rate_limit_per_s=0.25, rate_limit_burst=1, retry_after="date")
    faults.check(is_login=False)

    rejection = faults.check(is_login=False)

    assert rejection is not None
    assert rejection.headers == {"retry-after": formatdate(wall_clock.now + 4, usegmt=True)}


def test_retry_after_value_overrides_mode() -> None:
    faults, _, _ = make_faults(rate_limit_per_s=1, rate_limit_burst=1, retry_after="none", retry_after_value="soon")
    faults.check(is_login=False)

    rejection = faults.check(is_login=False)

    assert rejection is not None
    assert rejection.headers == {"retry-after": "soon"}


def test_rate_limit_includes_login() -> None:
    faults, _, _ = make_faults(rate_limit_per_s=1, rate_limit_burst=1)
    faults.check(is_login=True)

    rejection = faults.check(is_login=True)

    assert rejection is not None
    assert rejection.status == 429


def test_unavailable_window_lasts_its_duration() -> None:
    faults, monotonic, _ = make_faults(unavailable_for_s=2.5)

    first = faults.check(is_login=True)
    monotonic.advance(2.0)
    second = faults.check(is_login=False)
    monotonic.advance(0.5)

    assert first is not None
    assert first.status == 503
    assert first.headers == {"retry-after": "3"}
    assert second is not None
    assert second.headers == {"retry-after": "1"}
    assert faults.check(is_login=False) is None


def test_unavailable_window_does_not_take_tokens() -> None:
    faults, monotonic, _ = make_faults(rate_limit_per_s=1, rate_limit_burst=1, unavailable_for_s=1)
    faults.check(is_login=False)
    monotonic.advance(1.0)

    assert faults.check(is_login=False) is None


def test_fail_next_counts_down() -> None:
    faults, _, _ = make_faults(fail_next={"status": 504, "count": 2, "retry_after": "9"})

    first = faults.check(is_login=False)
    remaining = faults.as_dict()["fail_next"]["count"]
    second = faults.check(is_login=False)

    assert first is not None
    assert first.status == 504
    assert first.headers == {"retry-after": "9"}
    assert remaining == 1
    assert second is not None
    assert faults.check(is_login=False) is None
    assert faults.fail_next is None


def test_fail_next_skips_login_unless_included() -> None:
    faults, _, _ = make_faults(fail_next={"status": 500, "count": 1})

    assert faults.check(is_login=True) is None
    assert faults.check(is_login=False) is not None

    faults.update({"fail_next": {"status": 500, "count": 1, "include_login": True}})
    assert faults.check(is_login=True) is not None


def test_fail_next_count_zero_clears() -> None:
    faults, _, _ = make_faults(fail_next={"status": 500, "count": 3})

    faults.update({"fail_next": {"status": 500, "count": 0}})

    assert faults.fail_next is None


def test_update_rejects_unknown_field_without_changes() -> None:
    faults, _, _ = make_faults()

    with pytest.raises(FaultSettingsError) as raised:
        faults.update({"latency_ms": 10, "latency_s": 1})

    assert raised.value.field == "latency_s"
    assert faults.latency_ms == 0


def test_update_rejects_non_ascii_header() -> None:
    faults, _, _ = make_faults()

    with pytest.raises(FaultSettingsError) as raised:
        faults.update({"retry_after_value": "zítra"})

    assert raised.value.field == "retry_after_value"


async def test_stall_waits_until_released() -> None:
    faults, _, _ = make_faults(stall=True)
    waiter = asyncio.create_task(faults.wait_for_stall())
    await asyncio.sleep(0.05)
    assert not waiter.done()

    faults.update({"stall": False})

    assert await asyncio.wait_for(waiter, timeout=1.0) is None


async def test_stall_times_out_with_503() -> None:
    faults, _, _ = make_faults(stall=True, stall_max_s=0.05)

    rejection = await faults.wait_for_stall()

    assert rejection is not None
    assert rejection.status == 503


async def test_latency_with_jitter_stays_in_range() -> None:
    faults, _, _ = make_faults(latency_ms=20, latency_jitter_ms=20)

    started = time.monotonic()
    await faults.wait_latency()
    elapsed = time.monotonic() - started

    assert 0.02 <= elapsed < 0.5


# Tokens and credentials


def test_token_valid_until_ttl() -> None:
    clock = FakeClock()
    tokens = TokenStore(clock)
    token, expiry = tokens.issue(ttl_s=60)

    assert expiry == clock.now + 60
    clock.advance(59.9)
    assert tokens.is_valid(token)
    clock.advance(0.1)
    assert not tokens.is_valid(token)


def test_expire_all_invalidates_tokens() -> None:
    tokens = TokenStore(FakeClock())
    first, _ = tokens.issue(60)
    second, _ = tokens.issue(60)

    tokens.expire_all()

    assert not tokens.is_valid(first)
    assert not tokens.is_valid(second)


def test_expired_tokens_are_pruned() -> None:
    clock = FakeClock()
    tokens = TokenStore(clock)
    for _ in range(PRUNE_THRESHOLD + 1):
        tokens.issue(1)
    clock.advance(2)

    live, _ = tokens.issue(60)

    assert len(tokens._expiry_by_token) == 1
    assert tokens.is_valid(live)


def test_credentials_match() -> None:
    credentials = Credentials("app", "user", "secret")

    assert credentials.match("app", "user", "secret")
    assert not credentials.match("app", "user", "Secret")
    assert not credentials.match("app", None, "secret")


# Data


def write_data(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


CARD_TYPE = {"card_type_id": "t1", "text_id": "loyalty_card", "name": "Loyalty", "prefix": "1"}


def card(number: str, **fields: object) -> dict:
    return {"card_number": number, "card_type_id": "t1", "state": 1, **fields}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "top level must be an object"),
        ({"cards": [], "card_types": [], "extra": 1}, "unknown top-level keys ['extra']"),
        ({"cards": {}, "card_types": [CARD_TYPE]}, "'cards' must be a list"),
        ({"cards": [card("1", card_type_id="t2")], "card_types": [CARD_TYPE]}, "cards[0]: card_type_id 't2'"),
        ({"cards": [card("1"), card("1")], "card_types": [CARD_TYPE]}, "cards[1]: duplicate card_number '1'"),
        ({"cards": [card(1)], "card_types": [CARD_TYPE]}, "cards[0]: 'card_number' is required"),
        ({"cards": [card("1", state=2)], "card_types": [CARD_TYPE]}, "cards[0]: 'state' must be 0"),
        ({"cards": [card("1", state=True)], "card_types": [CARD_TYPE]}, "cards[0]: 'state' must be 0"),
        ({"cards": [card("1", valid_to="31.12.2030")], "card_types": [CARD_TYPE]}, "cards[0]: 'valid_to' must have"),
        ({"cards": [card("1", valid_to="2030-01-01T00:00:00+01:00")], "card_types": [CARD_TYPE]}, "without an offset"),
        ({"cards": [card("1", customer_id=5)], "card_types": [CARD_TYPE]}, "cards[0]: 'customer_id' must be a string"),
        (
            {"cards": [card("1", secondary_card_number="S"), card("2", secondary_card_number="S")], "card_types": [CARD_TYPE]},
            "duplicate secondary_card_number 'S'",
        ),
        ({"cards": [], "card_types": [{**CARD_TYPE, "name": ""}]}, "card_types[0]: 'name' is required"),
        ({"cards": [], "card_types": [CARD_TYPE, CARD_TYPE]}, "card_types[1]: duplicate card_type_id 't1'"),
    ],
)
def test_invalid_data_is_rejected(tmp_path: Path, document: object, message: str) -> None:
    path = write_data(tmp_path, document)

    with pytest.raises(DataError) as raised:
        load_data(path)

    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"cards": [\n  {]\n}', encoding="utf-8")

    with pytest.raises(DataError, match="invalid JSON at line 2"):
        load_data(path)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read the file"):
        load_data(tmp_path / "missing.json")


def test_card_without_id_gets_one(tmp_path: Path) -> None:
    store = load_data(write_data(tmp_path, {"cards": [card("A"), card("B")], "card_types": [CARD_TYPE]}))

    ids = [record.fields["card_id"] for record in store.cards]
    assert len(set(ids)) == 2
    assert json.loads(store.cards[0].json)["card_id"] == ids[0]


def test_extra_card_fields_pass_through(tmp_path: Path) -> None:
    store = load_data(write_data(tmp_path, {"cards": [card("A", nickname="x")], "card_types": [CARD_TYPE]}))

    assert json.loads(store.cards[0].json)["nickname"] == "x"
    assert "nickname" in store.card_sort_fields


def test_default_data_loads() -> None:
    store = load_data(None)

    assert len(store.cards) == 30
    assert len(store.card_types) == 4
    assert "0001234567890" in store.cards_by_number
    assert "AXNFUAIOHFDSNKA" in store.cards_by_secondary_number


def test_validity_bounds_are_inclusive(tmp_path: Path) -> None:
    document = {
        "cards": [card("A", valid_from="2030-01-01 00:00:00", valid_to="2030-12-31 23:59:59")],
        "card_types": [CARD_TYPE],
    }
    record = load_data(write_data(tmp_path, document)).cards[0]

    assert record.is_valid_at(datetime(2030, 1, 1, 0, 0, 0))
    assert record.is_valid_at(datetime(2030, 12, 31, 23, 59, 59))
    assert not record.is_valid_at(datetime(2029, 12, 31, 23, 59, 59))
    assert not record.is_valid_at(datetime(2031, 1, 1, 0, 0, 0))


def test_iso_t_separator_accepted(tmp_path: Path) -> None:
    document = {"cards": [card("A", valid_from="2030-01-01T00:00:00")], "card_types": [CARD_TYPE]}
    record = load_data(write_data(tmp_path, document)).cards[0]

    assert record.valid_from == datetime(2030, 1, 1)


def test_generated_cards_numbering() -> None:
    store = load_data(None, generate_cards=3)
    generated = store.cards[-3:]

    assert [record.fields["card_number"] for record in generated] == ["9000000000000", "9000000000001", "9000000000002"]
    assert generated_card_number(41) == "9000000000041"
    assert generated_secondary_card_number(41) == "8000000000041"
    assert store.cards_by_secondary_number["8000000000002"] is generated[2]
    assert json.loads(generated[1].json) == generated[1].fields


def test_generating_100k_cards_is_fast() -> None:
    started = time.monotonic()
    store = load_data(None, generate_cards=100_000)
    elapsed = time.monotonic() - started

    assert len(store.cards) == 100_030
    assert generated_card_number(99_999) in store.cards_by_number
    # Generous bound for slow CI machines. About 0.3 s on a 2-core development container.
    assert elapsed < 5.0


def test_generated_cards_collide_with_data(tmp_path: Path) -> None:
    path = write_data(tmp_path, {"cards": [card("9000000000000")], "card_types": [CARD_TYPE]})

    with pytest.raises(DataError, match="duplicate card_number '9000000000000'"):
        load_data(path, generate_cards=1)


def test_find_cards_by_list_keeps_data_order() -> None:
    store = load_data(None)
    now = datetime(2026, 1, 1)

    found = store.find_cards(CardQuery(card_numbers=["CARD10101", "1000000000016", "missing"]), now)

    assert [record.fields["card_number"] for record in found] == ["1000000000016", "CARD10101"]


# Time zone


def test_local_now_uses_project_time_zone() -> None:
    clock = FakeClock(datetime(2026, 7, 1, 12, 0, 0, tzinfo=ZoneInfo("UTC")).timestamp())
    simulator = Simulator(store=load_data(None), timezone=ZoneInfo("Europe/Prague"), clock=clock)

    assert simulator.local_now() == datetime(2026, 7, 1, 14, 0, 0)
    assert simulator.format_local(clock.now) == "2026-07-01 14:00:00"


# Accept-Language


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ["cs", "en-gb", "en"]),
        ("", ["cs", "en-gb", "en"]),
        ("en", ["en"]),
        ("en-GB", ["en-gb", "en"]),
        ("cs;q=0.3, en;q=0.8, de", ["de", "en", "cs"]),
        ("*, fr;q=0", []),
        ("en;q=abc, cs", ["cs"]),
    ],
)
def test_parse_accept_language(header: str | None, expected: list[str]) -> None:
    assert parse_accept_language(header) == expected


# Query strings


@pytest.mark.parametrize(
    "query",
    [
        "a=1&b=&c",
        "card_number_list%5B%5D=x%2By&card_number_list[]=a+b",
        "&&x=%C3%A9&y=%zz&=v",
        "k=v=w",
        "",
        "a=1;b=2",
        "%E9=1",
    ],
)
def test_query_parsing_matches_parse_qsl(query: str) -> None:
    expected = parse_qsl(query, keep_blank_values=True)

    assert parse_query_string(query.encode("latin-1")) == expected


# Statistics


def test_stats_reset_keeps_calls_in_flight() -> None:
    stats = Stats()
    stats.call_started()
    stats.call_started()
    stats.call_finished(1.0, "GET /cards", 200, 3)

    stats.reset()

    assert stats.as_dict()["concurrent_calls"] == 1
    assert stats.as_dict()["max_concurrent_calls"] == 1
    assert stats.as_dict()["cards_calls"] == 0


def test_call_log_is_bounded() -> None:
    stats = Stats(call_log_size=3)
    for index in range(5):
        stats.call_started()
        stats.call_finished(float(index), "GET /cards", 200, 0)

    assert [call["t"] for call in stats.calls_since(None)] == [2.0, 3.0, 4.0]
    assert stats.as_dict()["cards_calls"] == 5

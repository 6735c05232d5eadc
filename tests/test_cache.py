"""Reuse of lookup results the API marked cacheable with `Cache-Control: max-age`."""

from __future__ import annotations

import pytest

from schemas.carecloud import ApiCard
from simulator.data import generated_card_number
from simulator.testing import SimulatorProcess
from tests.harness import ReplyCollector, RequestSender
from worker.cache import MISSING, CardCache, reusable_for_s


@pytest.mark.parametrize(
    ("cache_control", "age", "expected"),
    [
        (None, None, 0.0),
        ("max-age=30", None, 30.0),
        ("private, max-age=30", "10", 20.0),
        ("max-age=30", "45", 0.0),
        ('max-age="15"', None, 15.0),
        ("no-store, max-age=30", None, 0.0),
        ("no-cache", None, 0.0),
        ("max-age=999999", None, 3600.0),
        ("s-maxage=30", None, 0.0),
        ("max-age=abc", None, 0.0),
    ],
)
def test_reusable_time_from_headers(cache_control, age, expected):
    assert reusable_for_s(cache_control, age) == expected


def test_entries_expire_and_keep_not_found():
    now = [0.0]
    cache = CardCache(clock=lambda: now[0])
    cache.store(False, ["A", "B"], {"A": ApiCard(card_number="A")}, max_age_s=10)

    assert cache.get(False, "A").card_number == "A"
    assert cache.get(False, "B") is None
    assert cache.get(True, "A") is MISSING, "a secondary search reused a primary answer"
    now[0] = 10.0
    assert cache.get(False, "A") is MISSING


def test_zero_max_age_stores_nothing():
    cache = CardCache()
    cache.store(False, ["A"], {}, max_age_s=0)
    assert len(cache) == 0


def test_oldest_entries_evicted_at_bound():
    cache = CardCache(max_entries=2)
    for number in ("A", "B", "C"):
        cache.store(False, [number], {}, max_age_s=60)
    assert cache.get(False, "A") is MISSING
    assert cache.get(False, "C") is None


@pytest.mark.kafka
async def test_repeat_lookups_served_from_cache(topics, start_worker):
    with SimulatorProcess(generate_cards=100, cache_max_age_s=60) as simulator:
        await start_worker.start(topics, simulator)
        numbers = [generated_card_number(1), generated_card_number(2), "UNKNOWN-1"]
        async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
            await sender.send_requests([("first", numbers)])
            assert not await replies.wait_for(["first"], timeout_s=30)
            calls_after_first = simulator.stats()["cards_calls"]

            await sender.send_requests([("again", numbers)])
            assert not await replies.wait_for(["again"], timeout_s=30)

        assert simulator.stats()["cards_calls"] == calls_after_first
        first, again = replies.reply("first"), replies.reply("again")
        assert [result["status"] for result in again["results"]] == ["found", "found", "not_found"]
        assert again["results"] == first["results"]


@pytest.mark.kafka
async def test_no_cache_without_max_age(topics, simulator, start_worker):
    await start_worker.start(topics, simulator)
    async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
        await sender.send_requests([("first", ["1000000000016"])])
        assert not await replies.wait_for(["first"], timeout_s=30)
        await sender.send_requests([("again", ["1000000000016"])])
        assert not await replies.wait_for(["again"], timeout_s=30)
    assert simulator.stats()["cards_calls"] == 2

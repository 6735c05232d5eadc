"""The batcher: merging, deduplication, size and URL limits, query shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from schemas.carecloud import ApiCard
from schemas.replies import ErrorKind
from worker.batch import Batcher
from worker.carecloud import card_number_url_bytes, cards_url_length
from worker.errors import LookupFailed

BASE_URL = "http://127.0.0.1:1/webservice/rest-api/enterprise-interface/v1.0"
FAR_DEADLINE = 1e12


class RecordingSource:
    """Answers every lookup from a fixed card list and records the calls."""

    def __init__(self, known: Sequence[str] = (), *, secondary_of: dict[str, str] | None = None, fail: LookupFailed | None = None) -> None:
        self.known = set(known)
        self.secondary_of = secondary_of or {}
        self.fail = fail
        self.calls: list[tuple[list[str], bool]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def get_cards(self, card_numbers, *, secondary, deadline):
        self.calls.append((list(card_numbers), secondary))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        if secondary:
            return [ApiCard(card_number=primary, secondary_card_number=number) for number, primary in self.secondary_of.items() if number in card_numbers]
        return [ApiCard(card_number=number) for number in card_numbers if number in self.known]


def make_batcher(source, *, max_cards=100, max_url_bytes=8192, linger_s=0.005, capacity=8) -> Batcher:
    return Batcher(
        source,
        max_cards=max_cards,
        max_url_bytes=max_url_bytes,
        linger_s=linger_s,
        base_url_bytes=cards_url_length(BASE_URL, [], secondary=True),
        card_number_bytes=card_number_url_bytes,
        capacity=lambda: capacity,
    )


async def results(futures):
    await asyncio.wait(set(futures.values()), timeout=5)
    return {number: future.result() for number, future in futures.items()}


async def test_requests_share_one_call_and_dedupe():
    source = RecordingSource(known=["A1", "B2"])
    batcher = make_batcher(source)

    first = batcher.lookup(["A1", "B2"], secondary=False, deadline=FAR_DEADLINE)
    second = batcher.lookup(["B2", "C3"], secondary=False, deadline=FAR_DEADLINE)
    first_results, second_results = await results(first), await results(second)

    assert source.calls == [(["A1", "B2", "C3"], False)]
    assert first_results["A1"].card.card_number == "A1"
    assert second_results["B2"].card.card_number == "B2"
    assert second_results["C3"].card is None


async def test_number_in_running_call_is_not_asked_again():
    source = RecordingSource(known=["A1"])
    source.release.clear()
    batcher = make_batcher(source)

    first = batcher.lookup(["A1"], secondary=False, deadline=FAR_DEADLINE)
    await asyncio.sleep(0.05)
    assert len(source.calls) == 1
    second = batcher.lookup(["A1"], secondary=False, deadline=FAR_DEADLINE)
    source.release.set()

    assert (await results(second))["A1"].card is not None
    assert (await results(first))["A1"].card is not None
    assert len(source.calls) == 1


async def test_max_cards_splits_batches():
    source = RecordingSource()
    batcher = make_batcher(source, max_cards=3)
    futures = batcher.lookup([f"N{i}" for i in range(7)], secondary=False, deadline=FAR_DEADLINE)
    await results(futures)
    assert [len(numbers) for numbers, _ in source.calls] == [3, 3, 1]


async def test_url_limit_splits_batches():
    source = RecordingSource()
    numbers = [f"{i:040d}" for i in range(20)]
    limit = cards_url_length(BASE_URL, [], secondary=True) + 5 * card_number_url_bytes(numbers[0])
    batcher = make_batcher(source, max_url_bytes=limit)
    await results(batcher.lookup(numbers, secondary=False, deadline=FAR_DEADLINE))

    for called, secondary in source.calls:
        assert len(called) <= 5
        assert cards_url_length(BASE_URL, called, secondary=True) <= limit
    assert sorted(number for called, _ in source.calls for number in called) == numbers


async def test_secondary_and_primary_never_share_a_call():
    source = RecordingSource(known=["P1"], secondary_of={"S1": "P1"})
    batcher = make_batcher(source)
    primary = batcher.lookup(["P1", "S1"], secondary=False, deadline=FAR_DEADLINE)
    secondary = batcher.lookup(["S1"], secondary=True, deadline=FAR_DEADLINE)

    primary_results, secondary_results = await results(primary), await results(secondary)
    assert sorted(source.calls) == [(["P1", "S1"], False), (["S1"], True)]
    assert primary_results["S1"].card is None
    assert secondary_results["S1"].card.card_number == "P1"


async def test_failed_call_resolves_every_card_with_error():
    failure = LookupFailed(ErrorKind.UNAVAILABLE, "503 after 5 attempts", 5)
    batcher = make_batcher(RecordingSource(fail=failure))
    outcome = await results(batcher.lookup(["A1", "B2"], secondary=False, deadline=FAR_DEADLINE))
    assert outcome["A1"].error is failure
    assert outcome["B2"].error.attempts == 5


async def test_due_batch_keeps_filling_while_no_capacity():
    source = RecordingSource()
    source.release.clear()
    capacity = {"free": 1}
    batcher = Batcher(
        source,
        max_cards=100,
        max_url_bytes=8192,
        linger_s=0.001,
        base_url_bytes=100,
        card_number_bytes=lambda number: 10,
        capacity=lambda: capacity["free"],
    )
    first = batcher.lookup(["A"], secondary=False, deadline=FAR_DEADLINE)
    await asyncio.sleep(0.02)
    capacity["free"] = 0
    later = [batcher.lookup([f"B{i}"], secondary=False, deadline=FAR_DEADLINE) for i in range(10)]
    await asyncio.sleep(0.05)
    assert len(source.calls) == 1, "a batch left while the limiter had no capacity"

    capacity["free"] = 1
    source.release.set()
    await results(first)
    for futures in later:
        await results(futures)
    assert [len(numbers) for numbers, _ in source.calls] == [1, 10]


async def test_close_fails_queued_batches_without_calling():
    source = RecordingSource()
    source.release.clear()
    batcher = make_batcher(source, max_cards=1, capacity=0)
    futures = batcher.lookup(["A", "B", "C"], secondary=False, deadline=FAR_DEADLINE)
    await asyncio.sleep(0.02)
    assert len(source.calls) == 1

    await batcher.close(timeout_s=1.0)
    assert len(source.calls) == 1, "close started calls nobody waits for"
    for number in ("B", "C"):
        assert futures[number].result().error.kind is ErrorKind.UNAVAILABLE
    assert batcher.running_calls == 0

"""Card lookup results the API allowed to reuse, for the time its `Cache-Control: max-age` gives.

The API's OpenAPI document specifies no caching headers, so without them
this cache stays empty and every lookup goes to the API. When a
deployment's gateway sends `max-age`, a card number looked up within that
time (found or not found) gets its result from here without a call,
following the vendor's advice to reuse results. Entries are per query shape, since a secondary-number search and a
primary-number search of the same string are different questions.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from schemas.carecloud import ApiCard

# Bound on memory: least recently stored entries go first.
MAX_ENTRIES = 100_000
# A max-age longer than this is cut to it, so a misconfigured gateway cannot
# pin stale card states (a card blocked since) for days.
MAX_AGE_CAP_S = 3600.0

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_REUSE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:[=,]|$)", re.IGNORECASE)

MISSING = object()


def reusable_for_s(cache_control: str | None, age: str | None = None) -> float:
    """Seconds a response may be reused per RFC 9111: max-age minus Age; 0 for no-store or no-cache."""
    if not cache_control or _NO_REUSE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return 0.0
    seconds = float(match.group(1))
    if age is not None and age.strip().isdigit():
        seconds -= float(age.strip())
    return max(0.0, min(seconds, MAX_AGE_CAP_S))


def index_cards(cards: Iterable[ApiCard], *, secondary: bool) -> dict[str, ApiCard]:
    """Map each returned card by the number it was searched by; the first card of a number wins."""
    index: dict[str, ApiCard] = {}
    for card in cards:
        number = card.secondary_card_number if secondary else card.card_number
        if number is not None and number not in index:
            index[number] = card
    return index


class CardCache:
    def __init__(self, *, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[tuple[bool, str], tuple[float, ApiCard | None]] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, secondary: bool, card_number: str) -> ApiCard | None | object:
        """Return the stored card (None for not found), or `MISSING` when nothing fresh is stored."""
        key = (secondary, card_number)
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        expires_at, card = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return MISSING
        self.hits += 1
        return card

    def store(self, secondary: bool, card_numbers: Iterable[str], found: Mapping[str, ApiCard], max_age_s: float) -> None:
        """Remember one response's answer for each number it asked for, `max_age_s` long."""
        if max_age_s <= 0:
            return
        expires_at = self._clock() + max_age_s
        for number in card_numbers:
            key = (secondary, number)
            self._entries[key] = (expires_at, found.get(number))
            self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

"""Masking of card numbers for logs: only the last 4 characters stay readable."""

from __future__ import annotations

from collections.abc import Iterable

VISIBLE_CHARACTERS = 4


def mask_card_number(card_number: str) -> str:
    if len(card_number) <= VISIBLE_CHARACTERS:
        return "*" * len(card_number)
    return "*" * (len(card_number) - VISIBLE_CHARACTERS) + card_number[-VISIBLE_CHARACTERS:]


def mask_card_numbers(card_numbers: Iterable[str], limit: int = 5) -> str:
    """Format a few masked card numbers for a log line, with a count of the rest."""
    numbers = list(card_numbers)
    shown = ", ".join(mask_card_number(number) for number in numbers[:limit])
    if len(numbers) > limit:
        shown += f" and {len(numbers) - limit} more"
    return shown

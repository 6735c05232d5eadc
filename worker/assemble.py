"""Assemble one reply per request from the outcomes of its card numbers."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from schemas.carecloud import ApiCard
from schemas.replies import Card, CardResult, CardStatus, ErrorInfo, ErrorKind, LookupReply, ReplyStatus
from worker.batch import CardOutcome
from worker.decode import Rejection, Request

DEADLINE_MESSAGE = "the request's deadline passed before this card was answered; retry with a longer deadline_ms"


def assemble_reply(
    request: Request,
    outcomes: Mapping[str, CardOutcome],
    *,
    timezone: ZoneInfo,
    now: datetime | None = None,
) -> LookupReply:
    """Build the reply; a valid number missing from `outcomes` was not answered before the deadline."""
    now = now or datetime.now(timezone)
    results = []
    for entry in request.card_entries:
        if entry.invalid_reason is not None:
            error = ErrorInfo(kind=ErrorKind.INVALID_CARD_NUMBER, message=entry.invalid_reason)
            results.append(CardResult(card_number=entry.card_number, status=CardStatus.INVALID, error=error))
            continue
        outcome = outcomes.get(entry.card_number)
        results.append(_card_result(entry.card_number, outcome, timezone, now))

    has_errors = any(result.status is CardStatus.ERROR for result in results)
    status = ReplyStatus.PARTIAL if has_errors else ReplyStatus.COMPLETE
    return LookupReply(request_id=request.request_id, status=status, results=results)


def rejected_reply(rejection: Rejection) -> LookupReply:
    return LookupReply(
        request_id=rejection.request_id,
        status=ReplyStatus.REJECTED,
        error=ErrorInfo(kind=ErrorKind.INVALID_REQUEST, message=rejection.reason),
    )


def enrich_card(card: ApiCard, timezone: ZoneInfo, now: datetime) -> Card:
    return Card(
        **card.model_dump(),
        is_active=card.state == 1,
        is_valid_now=is_valid_at(card, now, timezone),
    )


def is_valid_at(card: ApiCard, now: datetime, timezone: ZoneInfo) -> bool:
    """True when `now` lies within valid_from..valid_to; a missing or unreadable bound is open."""
    valid_from = _parse_api_datetime(card.valid_from, timezone)
    valid_to = _parse_api_datetime(card.valid_to, timezone)
    if valid_from is not None and now < valid_from:
        return False
    if valid_to is not None and now > valid_to:
        return False
    return True


def _card_result(number: str, outcome: CardOutcome | None, timezone: ZoneInfo, now: datetime) -> CardResult:
    if outcome is None:
        error = ErrorInfo(kind=ErrorKind.DEADLINE_EXCEEDED, message=DEADLINE_MESSAGE)
        return CardResult(card_number=number, status=CardStatus.ERROR, error=error)
    if outcome.error is not None:
        failure = outcome.error
        error = ErrorInfo(kind=failure.kind, message=failure.message, attempts=failure.attempts)
        return CardResult(card_number=number, status=CardStatus.ERROR, error=error)
    if outcome.card is None:
        return CardResult(card_number=number, status=CardStatus.NOT_FOUND)
    return CardResult(card_number=number, status=CardStatus.FOUND, card=enrich_card(outcome.card, timezone, now))


@functools.lru_cache(maxsize=65536)
def _parse_api_datetime(value: str | None, timezone: ZoneInfo) -> datetime | None:
    # The API documents `YYYY-MM-DD HH:MM:SS` and accepts ISO-8601 with a `T`
    # on input, so both are read; either is local to the project's zone. The
    # same bounds recur across cards and replies, hence the cache.
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value[:19])
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone)

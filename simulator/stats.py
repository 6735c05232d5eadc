"""Counters of API calls and a bounded log of recent calls, served by the control API."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from typing import Any

CALL_LOG_SIZE = 200_000
CARDS_ENDPOINT = "GET /cards"
LOGIN_ENDPOINT = "POST /users/actions/login"


class Stats:
    """Request counters by endpoint and status, card-number counts and the call log.

    Endpoints are keyed as ``"<METHOD> <route template>"``, for example
    ``"GET /card-types/{card_type_id}"``.
    """

    def __init__(self, call_log_size: int = CALL_LOG_SIZE) -> None:
        self._call_log_size = call_log_size
        self.concurrent_calls = 0
        self.reset()

    def reset(self) -> None:
        """Clear counters and the call log. Calls in flight stay counted in concurrent_calls."""
        self.requests_by_endpoint: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.card_numbers_per_call: Counter[int] = Counter()
        self.cards_calls = 0
        self.card_numbers_requested = 0
        self.max_card_numbers_per_call = 0
        self.logins = 0
        self.max_concurrent_calls = self.concurrent_calls
        self.calls: deque[tuple[float, str, int, int]] = deque(maxlen=self._call_log_size)

    def call_started(self) -> None:
        self.concurrent_calls += 1
        if self.concurrent_calls > self.max_concurrent_calls:
            self.max_concurrent_calls = self.concurrent_calls

    def call_finished(self, arrived_at: float, endpoint: str, status: int, card_numbers: int) -> None:
        """Record a finished call. ``card_numbers`` is the count of card_number_list[] values sent."""
        self.concurrent_calls -= 1
        self.requests_by_endpoint[endpoint][status] += 1
        self.calls.append((arrived_at, endpoint, status, card_numbers))

        if endpoint == CARDS_ENDPOINT:
            self.cards_calls += 1
            self.card_numbers_requested += card_numbers
            self.card_numbers_per_call[card_numbers] += 1
            if card_numbers > self.max_card_numbers_per_call:
                self.max_card_numbers_per_call = card_numbers

    def login_succeeded(self) -> None:
        self.logins += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_by_endpoint": {
                endpoint: {str(status): count for status, count in sorted(statuses.items())}
                for endpoint, statuses in sorted(self.requests_by_endpoint.items())
            },
            "cards_calls": self.cards_calls,
            "card_numbers_requested": self.card_numbers_requested,
            "card_numbers_per_call": {str(size): count for size, count in sorted(self.card_numbers_per_call.items())},
            "max_card_numbers_per_call": self.max_card_numbers_per_call,
            "logins": self.logins,
            "max_concurrent_calls": self.max_concurrent_calls,
            "concurrent_calls": self.concurrent_calls,
        }

    def calls_since(self, since: float | None) -> list[dict[str, Any]]:
        """Return logged calls that arrived at or after ``since`` (epoch seconds), oldest first by finish time."""
        return [
            {"t": arrived_at, "endpoint": endpoint, "status": status, "card_numbers": card_numbers}
            for arrived_at, endpoint, status, card_numbers in self.calls
            if since is None or arrived_at >= since
        ]

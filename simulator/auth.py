"""Credentials and bearer tokens of the simulated Enterprise API user."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

# Expired tokens are dropped when a login finds more than this many stored, so that
# long benchmarks that log in repeatedly do not grow the table without bound.
PRUNE_THRESHOLD = 1000


@dataclass(frozen=True)
class Credentials:
    application_id: str = "simulator-app"
    login: str = "simulator"
    password: str = "simulator"

    def match(self, application_id: object, login: object, password: object) -> bool:
        """Return whether the three values equal the configured credentials (compared in constant time)."""
        if not all(isinstance(value, str) for value in (application_id, login, password)):
            return False
        results = [
            secrets.compare_digest(application_id.encode(), self.application_id.encode()),
            secrets.compare_digest(login.encode(), self.login.encode()),
            secrets.compare_digest(password.encode(), self.password.encode()),
        ]
        return all(results)


class TokenStore:
    """Issued bearer tokens and their expiry times in wall-clock epoch seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._expiry_by_token: dict[str, float] = {}

    def issue(self, ttl_s: float) -> tuple[str, float]:
        """Create a random token valid for ``ttl_s`` seconds. Returns the token and its expiry time."""
        now = self._clock()
        if len(self._expiry_by_token) > PRUNE_THRESHOLD:
            self._expiry_by_token = {token: expiry for token, expiry in self._expiry_by_token.items() if expiry > now}
        token = secrets.token_hex(20)
        expiry = now + ttl_s
        self._expiry_by_token[token] = expiry
        return token, expiry

    def is_valid(self, token: str) -> bool:
        expiry = self._expiry_by_token.get(token)
        return expiry is not None and self._clock() < expiry

    def expire_all(self) -> None:
        """Invalidate every token issued so far."""
        self._expiry_by_token.clear()

"""CareCloud Enterprise API client: bearer login, `GET /cards` with paging, retries.

Every call passes through the shared `Limiter`, login included, so the worker
has a single view of the API's rate budget. Failures leave this module as
`LookupFailed` with the kind the reply reports (rate_limited, unavailable,
timeout, rejected, deadline_exceeded) and the number of attempts made.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from schemas.carecloud import ApiCard, CardsPage, LoginData
from schemas.replies import ErrorKind
from worker.cache import CardCache, index_cards, reusable_for_s
from worker.errors import LookupFailed
from worker.limit import DeadlineExceeded, Limiter, Outcome
from worker.logs import redact
from worker.settings import API_MAX_CARD_NUMBERS_PER_CALL, Settings

logger = logging.getLogger(__name__)

LOGIN_PATH = "/users/actions/login"
CARDS_PATH = "/cards"
CARD_TYPES_PATH = "/card-types"
CARD_NUMBER_LIST_PARAM = "card_number_list[]"
API_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Statuses after which the same call may succeed later (RFC 9110 semantics
# plus the API's documented use of 429 and 503).
_UNAVAILABLE_STATUSES = frozenset({500, 502, 503, 504})
_LONGEST_LOGGED_BODY = 500


class CareCloudClient:
    """One client per worker, sharing one connection pool and one limiter."""

    def __init__(
        self,
        settings: Settings,
        limiter: Limiter,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
        on_call: Callable[[str, str, float], None] | None = None,
        cache: CardCache | None = None,
    ) -> None:
        self._settings = settings
        # Filled from GET /cards responses that carry `Cache-Control: max-age`.
        self.cache = cache
        # Called after every HTTP call with (endpoint, status, latency_s);
        # status is the HTTP status code, `timeout` or `connection_error`.
        self.on_call = on_call
        self._limiter = limiter
        self._clock = clock
        self._sleep = sleep
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.api_connect_timeout_s,
                read=settings.api_read_timeout_s,
                write=settings.api_read_timeout_s,
                pool=settings.api_read_timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=settings.api_max_concurrency,
                max_keepalive_connections=settings.api_max_concurrency,
            ),
        )
        self._base_url = settings.api_base_url
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._login_lock = asyncio.Lock()
        self.last_success_at: float | None = None
        # Clock time of the last timeout, connection failure or 5xx, for readiness.
        self.last_failure_at: float | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- Lookups -----------------------------------------------------------

    async def get_cards(
        self,
        card_numbers: Sequence[str],
        *,
        secondary: bool,
        deadline: float | None = None,
    ) -> list[ApiCard]:
        """Fetch every card matching `card_numbers`, following pages via `offset`."""
        if not card_numbers:
            return []
        if len(card_numbers) > API_MAX_CARD_NUMBERS_PER_CALL:
            raise ValueError(
                f"{len(card_numbers)} card numbers in one call; the API accepts at most {API_MAX_CARD_NUMBERS_PER_CALL}"
            )

        cards: list[ApiCard] = []
        page_size = len(card_numbers)
        offset = 0
        reusable_s = math.inf
        while True:
            params = cards_query(card_numbers, secondary=secondary, count=page_size, offset=offset)
            body, headers = await self._request_with_headers("GET", CARDS_PATH, params=params, deadline=deadline)
            reusable_s = min(reusable_s, reusable_for_s(headers.get("Cache-Control"), headers.get("Age")))
            page = _parse(CardsPage, body.get("data"), CARDS_PATH)
            cards.extend(page.cards)
            offset += len(page.cards)
            # An empty page ends the loop even if total_items claims more, so a
            # miscounting server cannot make the worker page forever.
            if not page.cards or offset >= page.total_items:
                break

        if self.cache is not None:
            self.cache.store(secondary, card_numbers, index_cards(cards, secondary=secondary), reusable_s)
        return cards

    async def get_card_type(self, card_type_id: str, *, deadline: float | None = None) -> dict[str, Any]:
        body = await self._request("GET", f"{CARD_TYPES_PATH}/{quote(card_type_id, safe='')}", deadline=deadline)
        return dict(body.get("data") or {})

    # --- Authentication ----------------------------------------------------

    async def _bearer_token(self, deadline: float | None) -> str:
        if self._token is not None and self._clock() < self._token_expires_at:
            return self._token
        async with self._login_lock:
            # Another call may have logged in while this one waited for the lock.
            if self._token is not None and self._clock() < self._token_expires_at:
                return self._token
            await self._login(deadline)
            assert self._token is not None
            return self._token

    async def _login(self, deadline: float | None) -> None:
        settings = self._settings
        payload = {
            "user_external_application_id": settings.api_external_application_id,
            "login": settings.api_login,
            "password": settings.api_password.get_secret_value(),
        }
        body = await self._request("POST", LOGIN_PATH, json=payload, deadline=deadline, authenticated=False)
        login = _parse(LoginData, body.get("data"), LOGIN_PATH)
        self._token = login.bearer_token
        self._token_expires_at = self._expiry_on_clock(login.valid_to)
        logger.info("logged in to the CareCloud API; token valid until %s project time", login.valid_to)

    def _expiry_on_clock(self, valid_to: str | None) -> float:
        """Convert the token's `valid_to` (project local time) to this client's clock, minus the margin."""
        if not valid_to:
            return math.inf  # no stated expiry: keep the token until a 401
        try:
            expires = datetime.strptime(valid_to, API_DATETIME_FORMAT).replace(tzinfo=self._settings.timezone)
        except ValueError:
            logger.warning("the login answer's valid_to %r is not YYYY-MM-DD HH:MM:SS; keeping the token until a 401", valid_to)
            return math.inf
        seconds_left = expires.timestamp() - time.time() - self._settings.token_refresh_margin_s
        return self._clock() + max(0.0, seconds_left)

    async def _invalidate_token(self, token: str) -> None:
        async with self._login_lock:
            # Only the first of many concurrent 401s clears the token; the
            # others see a new token already and reuse it.
            if self._token == token:
                self._token = None

    # --- One call, with retries --------------------------------------------

    async def _request(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        body, _headers = await self._request_with_headers(method, path, **options)
        return body

    async def _request_with_headers(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json: dict[str, Any] | None = None,
        deadline: float | None,
        authenticated: bool = True,
    ) -> tuple[dict[str, Any], httpx.Headers]:
        max_attempts = self._settings.api_max_attempts
        attempt = 0
        relogged = False
        while True:
            attempt += 1
            headers = {"Accept-Language": self._settings.api_accept_language, "Accept": "application/json"}
            token = None
            if authenticated:
                token = await self._bearer_token(deadline)
                headers["Authorization"] = f"Bearer {token}"

            response, failure = await self._send_once(method, path, params, json, headers, deadline, attempt)
            if response is not None and response.is_success:
                self.last_success_at = self._clock()
                return _json_body(response, path), response.headers

            if response is not None and response.status_code == 401 and authenticated and not relogged:
                # The token expired or was revoked: one shared re-login, one retry.
                relogged = True
                attempt -= 1
                assert token is not None
                await self._invalidate_token(token)
                continue

            kind, message = failure if failure else _classify(response, path)
            if kind is ErrorKind.REJECTED or attempt >= max_attempts:
                raise LookupFailed(kind, f"{message} after {attempt} attempt(s)", attempt)

            self._limiter.note_retry()
            if kind is ErrorKind.RATE_LIMITED:
                # The limiter already paused every caller; the next permit waits for it.
                continue
            delay = self._limiter.backoff_s(attempt)
            if deadline is not None and self._clock() + delay >= deadline:
                raise LookupFailed(
                    ErrorKind.DEADLINE_EXCEEDED,
                    f"the request's deadline falls inside the backoff after: {message}",
                    attempt,
                )
            await self._sleep(delay)

    async def _send_once(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str],
        deadline: float | None,
        attempt: int,
    ) -> tuple[httpx.Response | None, tuple[ErrorKind, str] | None]:
        """Send one HTTP request under a limiter permit; return the response or the transport failure."""
        try:
            async with self._limiter.permit(deadline=deadline) as permit:
                started = self._clock()
                try:
                    response = await self._http.request(
                        method, self._base_url + path, params=params, json=json, headers=headers
                    )
                except httpx.TimeoutException as exc:
                    permit.record(Outcome.TIMEOUT, latency_s=self._clock() - started)
                    self._observe_failure(method, path, "timeout", started)
                    logger.warning("%s %s timed out after %.3fs (attempt %d): %s", method, path, self._clock() - started, attempt, type(exc).__name__)
                    return None, (ErrorKind.TIMEOUT, f"{method} {path} timed out")
                except httpx.TransportError as exc:
                    permit.record(Outcome.TIMEOUT, latency_s=self._clock() - started)
                    self._observe_failure(method, path, "connection_error", started)
                    logger.warning("%s %s failed to connect (attempt %d): %s", method, path, attempt, redact(str(exc)))
                    return None, (ErrorKind.UNAVAILABLE, f"{method} {path} failed: {type(exc).__name__}")

                latency = self._clock() - started
                permit.record(
                    _outcome(response.status_code),
                    latency_s=latency,
                    retry_after=response.headers.get("Retry-After"),
                )
        except DeadlineExceeded:
            raise LookupFailed(
                ErrorKind.DEADLINE_EXCEEDED,
                f"the request's deadline passed while waiting to call {method} {path}",
                attempt - 1,
            ) from None

        if response.status_code in _UNAVAILABLE_STATUSES:
            self.last_failure_at = self._clock()
        if self.on_call is not None:
            self.on_call(endpoint_label(method, path), str(response.status_code), latency)
        _log_call(method, path, response, latency, attempt)
        return response, None

    def _observe_failure(self, method: str, path: str, status: str, started: float) -> None:
        self.last_failure_at = self._clock()
        if self.on_call is not None:
            self.on_call(endpoint_label(method, path), status, self._clock() - started)


def cards_query(card_numbers: Sequence[str], *, secondary: bool, count: int, offset: int) -> list[tuple[str, str]]:
    params = [("count", str(count)), ("offset", str(offset))]
    if secondary:
        params.append(("search_secondary_card_number", "true"))
    params.extend((CARD_NUMBER_LIST_PARAM, number) for number in card_numbers)
    return params


def cards_url_length(base_url: str, card_numbers: Sequence[str], *, secondary: bool) -> int:
    """Length in bytes of the `GET /cards` URL for these card numbers, as httpx encodes it."""
    params = cards_query(card_numbers, secondary=secondary, count=len(card_numbers), offset=0)
    return len(str(httpx.URL(base_url + CARDS_PATH, params=params)))


def card_number_url_bytes(card_number: str) -> int:
    """Bytes one card number adds at most to the `GET /cards` URL: `&card_number_list%5B%5D=<encoded>`.

    Percent-encoding every reserved character gives an upper bound of what
    httpx writes, which leaves some of them as they are.
    """
    return len("&card_number_list%5B%5D=") + len(quote(card_number, safe=""))


def _outcome(status: int) -> Outcome:
    if status < 400:
        return Outcome.SUCCESS
    if status == 429:
        return Outcome.RATE_LIMITED
    if status in _UNAVAILABLE_STATUSES:
        return Outcome.UNAVAILABLE
    return Outcome.REJECTED


def _classify(response: httpx.Response | None, path: str) -> tuple[ErrorKind, str]:
    assert response is not None
    status = response.status_code
    if status == 429:
        return ErrorKind.RATE_LIMITED, f"the API returned 429 Too Many Requests for {path}"
    if status in _UNAVAILABLE_STATUSES:
        return ErrorKind.UNAVAILABLE, f"the API returned {status} for {path}"
    return ErrorKind.REJECTED, f"the API rejected {path} with {status}: {_error_reason(response)}"


def _error_reason(response: httpx.Response) -> str:
    """Pull the API's own reason out of an error body of the documented shape."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return response.reason_phrase or "no reason given"
    parts = [str(error.get(key)) for key in ("title", "detail") if error.get(key)]
    invalid = (error.get("error_data") or {}).get("invalid_params") if isinstance(error.get("error_data"), dict) else None
    if isinstance(invalid, list):
        for item in invalid[:5]:
            if isinstance(item, dict):
                parts.append(f"{item.get('name')}: {item.get('reason')}")
    return "; ".join(parts) or response.reason_phrase or "no reason given"


def _json_body(response: httpx.Response, path: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise LookupFailed(ErrorKind.REJECTED, f"the API returned a body that is not JSON for {path}", 1) from exc
    if not isinstance(body, dict):
        raise LookupFailed(ErrorKind.REJECTED, f"the API returned JSON that is not an object for {path}", 1)
    return body


def _parse(model: type, data: object, path: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise LookupFailed(
            ErrorKind.REJECTED, f"the API's response to {path} does not match the documented schema: {exc.error_count()} error(s)", 1
        ) from exc


def endpoint_label(method: str, path: str) -> str:
    """The call's method and path template, as logs and metrics name it; never the query, which carries card numbers."""
    if path.startswith(CARD_TYPES_PATH + "/"):
        return f"{method} {CARD_TYPES_PATH}/{{card_type_id}}"
    return f"{method} {path}"


def _log_call(method: str, path: str, response: httpx.Response, latency_s: float, attempt: int) -> None:
    endpoint = endpoint_label(method, path)
    if response.is_success:
        logger.info("%s returned %d in %.3fs", endpoint, response.status_code, latency_s,
                    extra={"endpoint": endpoint, "status": response.status_code, "duration_s": round(latency_s, 4), "attempt": attempt})
        return
    logger.warning(
        "%s returned %d in %.3fs (attempt %d): %s",
        endpoint,
        response.status_code,
        latency_s,
        attempt,
        # The API's error text may echo card numbers from the request.
        redact(_error_reason(response)[:_LONGEST_LOGGED_BODY]),
        extra={"endpoint": endpoint, "status": response.status_code, "duration_s": round(latency_s, 4), "attempt": attempt},
    )

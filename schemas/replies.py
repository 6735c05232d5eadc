"""The reply the worker publishes for each request."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class ReplyStatus(str, Enum):
    COMPLETE = "complete"  # every card answered found, not_found or invalid
    PARTIAL = "partial"  # some cards ended in `error`
    REJECTED = "rejected"  # the request itself was invalid, and `error` gives the reason


class CardStatus(str, Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    ERROR = "error"


class ErrorKind(str, Enum):
    INVALID_REQUEST = "invalid_request"
    INVALID_CARD_NUMBER = "invalid_card_number"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    DEADLINE_EXCEEDED = "deadline_exceeded"


class ErrorInfo(BaseModel):
    kind: ErrorKind = Field(..., description="Machine-readable error class.")
    message: str = Field(..., description="What went wrong and what to do, in English.")
    attempts: int | None = Field(None, description="API calls made for this card before giving up.")


class Card(BaseModel):
    """A card as the API returned it, plus two fields the worker derives."""

    card_id: str | None = None
    customer_id: str | None = None
    card_type_id: str | None = None
    card_number: str
    secondary_card_number: str | None = None
    valid_from: str | None = Field(None, description="`YYYY-MM-DD HH:MM:SS` in the project's time zone.")
    valid_to: str | None = Field(None, description="`YYYY-MM-DD HH:MM:SS` in the project's time zone.")
    state: int | None = Field(None, description="0 blocked, 1 active.")
    store_id: str | None = None
    last_change: str | None = None
    is_active: bool = Field(..., description="True when `state` is 1.")
    is_valid_now: bool = Field(
        ...,
        description="True when now, in the project's time zone, lies within valid_from..valid_to; a missing bound is open.",
    )


class CardResult(BaseModel):
    card_number: str = Field(..., description="The card number exactly as requested.")
    status: CardStatus
    card: Card | None = Field(None, description="Present when status is `found`.")
    error: ErrorInfo | None = Field(None, description="Present when status is `invalid` or `error`.")


class LookupReply(BaseModel):
    """One reply per request; `results` follows the request's order, one entry per distinct number."""

    request_id: str
    status: ReplyStatus
    results: list[CardResult] = Field(default_factory=list)
    error: ErrorInfo | None = Field(None, description="Present when status is `rejected`.")

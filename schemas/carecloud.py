"""The parts of CareCloud API responses the worker reads.

The vendor adds optional fields without a version bump, so every model ignores
unknown fields rather than failing on them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ApiCard(BaseModel):
    model_config = ConfigDict(extra="ignore")

    card_id: str | None = None
    customer_id: str | None = None
    card_type_id: str | None = None
    card_number: str
    secondary_card_number: str | None = None
    valid_from: str | None = None
    valid_to: str | None = None
    state: int | None = None
    store_id: str | None = None
    last_change: str | None = None


class CardsPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cards: list[ApiCard] = Field(default_factory=list)
    total_items: int = 0


class LoginData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bearer_token: str
    valid_to: str | None = None

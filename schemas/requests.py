"""The card lookup request, as producers put it on the request topic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

MAX_CARD_NUMBERS_PER_REQUEST = 1000


class LookupRequest(BaseModel):
    """A request to look up 1 to 1000 card numbers.

    Card numbers are strings. Each element is checked on its own, so one bad
    value is answered `invalid` without rejecting the rest of the request;
    that is why the items are typed loosely here and documented as strings.
    """

    model_config = ConfigDict(extra="ignore")

    request_id: str | None = Field(
        None,
        max_length=256,
        description="Id echoed in the reply; when absent, the message's correlation id is used.",
    )
    card_numbers: list[JsonValue] = Field(
        ...,
        min_length=1,
        max_length=MAX_CARD_NUMBERS_PER_REQUEST,
        description=(
            "Card numbers to look up, as strings; leading zeros, letters and case are kept. "
            "A JSON integer is accepted and read as its decimal digits."
        ),
        json_schema_extra={"items": {"type": "string"}},
    )
    search_secondary_card_number: bool = Field(
        False,
        strict=True,
        description="Match the numbers against the cards' secondary numbers instead of the primary ones.",
    )
    deadline_ms: int | None = Field(
        None,
        gt=0,
        le=3_600_000,
        strict=True,
        description=(
            "Milliseconds the requester waits for the reply, counted from the message's timestamp. "
            "Cards not answered by then are returned with an error of kind `deadline_exceeded`."
        ),
    )

"""Query string and header parsing with the spec's validation rules.

The simulator is stricter than the spec requires. A query parameter that the spec does
not list for the endpoint is rejected with 400 (reason ``unknown_parameter``). A client
that sends a misspelled or unbracketed parameter then fails in tests, where a lenient
server would silently return unfiltered results.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import unquote_plus

from .errors import (
    REASON_INVALID_VALUE_FORMAT,
    REASON_NOT_ALLOWED_VALUE,
    REASON_UNKNOWN_PARAMETER,
    InvalidParam,
)

MAX_PAGE_SIZE = 1000  # maxItems of the collections in the spec's 200 responses
MAX_LIST_VALUES = 1000  # maxItems of card_number_list in the spec
DEFAULT_COUNT = 100
DEFAULT_ACCEPT_LANGUAGE = "cs, en-gb;q=0.8"  # the spec's default for Accept-Language

_INTEGER = re.compile(r"-?[0-9]+")


def parse_query_string(query_string: bytes) -> list[tuple[str, str]]:
    """Split a query string into (key, value) pairs, as ``parse_qsl(keep_blank_values=True)`` does.

    Only parts that contain ``%`` or ``+`` are unquoted, and each distinct key is
    unquoted once. For a lookup of 1000 card numbers, whose repeated key is sent as
    ``card_number_list%5B%5D``, this takes about 0.4 ms where ``parse_qsl`` takes
    about 10 ms (2-core development container).
    """
    pairs: list[tuple[str, str]] = []
    keys: dict[str, str] = {}
    for part in query_string.decode("latin-1").split("&"):
        if not part:
            continue
        raw_key, _, value = part.partition("=")
        key = keys.get(raw_key)
        if key is None:
            key = keys[raw_key] = _unquote(raw_key)
        pairs.append((key, _unquote(value)))
    return pairs


def _unquote(text: str) -> str:
    if "%" in text or "+" in text:
        return unquote_plus(text)
    return text


def count_list_values(pairs: list[tuple[str, str]], name: str) -> int:
    """Count the values sent under the bracketed key ``name[]``."""
    key = name + "[]"
    return sum(1 for pair_key, _ in pairs if pair_key == key)


class QueryParams:
    """Query parameters of one request, checked against the names an endpoint accepts.

    ``scalars`` keeps the last value of each plain key. ``lists`` contains the values of
    bracketed keys (``name[]``). Problems are collected in ``errors`` so that one 400
    response names every invalid parameter.
    """

    def __init__(
        self,
        pairs: list[tuple[str, str]],
        *,
        scalar_names: Collection[str],
        list_names: Collection[str] = (),
        bracket_only_list_names: Collection[str] = (),
    ) -> None:
        self.scalars: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}
        self.errors: list[InvalidParam] = []

        for key, value in pairs:
            if key.endswith("[]") and key[:-2] in list_names:
                self.lists.setdefault(key[:-2], []).append(value)
            elif key in bracket_only_list_names:
                self.errors.append(
                    InvalidParam(key, REASON_INVALID_VALUE_FORMAT, value, f"Send {key} as the repeated key {key}[].")
                )
            elif key in scalar_names:
                self.scalars[key] = value
            else:
                self.errors.append(
                    InvalidParam(key, REASON_UNKNOWN_PARAMETER, value, f"The endpoint has no query parameter {key!r}.")
                )

    def reject(self, name: str, reason: str, message: str) -> None:
        self.errors.append(InvalidParam(name, reason, self.scalars.get(name, ""), message))

    def integer(self, name: str, default: int, minimum: int) -> int:
        raw = self.scalars.get(name)
        if raw is None:
            return default
        if not _INTEGER.fullmatch(raw):
            self.reject(name, REASON_INVALID_VALUE_FORMAT, f"{name} must be an integer.")
            return default
        value = int(raw)
        if value < minimum:
            self.reject(name, REASON_NOT_ALLOWED_VALUE, f"{name} must be at least {minimum}.")
            return default
        return value

    def boolean(self, name: str) -> bool | None:
        raw = self.scalars.get(name)
        if raw is None:
            return None
        if raw == "true":
            return True
        if raw == "false":
            return False
        self.reject(name, REASON_NOT_ALLOWED_VALUE, f"{name} must be true or false.")
        return None

    def choice(self, name: str, allowed: Collection[str]) -> str | None:
        raw = self.scalars.get(name)
        if raw is None or raw in allowed:
            return raw
        self.reject(name, REASON_NOT_ALLOWED_VALUE, f"{name} must be one of: {', '.join(sorted(allowed))}.")
        return None

    def string(self, name: str) -> str | None:
        return self.scalars.get(name)

    def paging(self) -> tuple[int, int]:
        """Return (count, offset). A count above the spec's maximum page size is lowered to it."""
        count = min(self.integer("count", DEFAULT_COUNT, 1), MAX_PAGE_SIZE)
        offset = self.integer("offset", 0, 0)
        return count, offset

    def sorting(self, sort_fields: Collection[str]) -> tuple[str | None, bool]:
        """Return (sort_field, descending)."""
        sort_field = self.choice("sort_field", sort_fields)
        direction = self.choice("sort_direction", ("ASC", "DESC"))
        return sort_field, direction == "DESC"


def parse_accept_language(header: str | None) -> list[str]:
    """Return the language tags of an Accept-Language header, most preferred first, in lower case.

    Each tag with a region (``en-gb``) is followed by its primary language (``en``).
    Without the header, the spec's default ``cs, en-gb;q=0.8`` applies.
    """
    if not header:
        header = DEFAULT_ACCEPT_LANGUAGE

    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        tag, _, parameters = item.strip().partition(";")
        tag = tag.strip().lower()
        if not tag or tag == "*":
            continue
        quality = 1.0
        parameters = parameters.strip()
        if parameters.startswith("q="):
            try:
                quality = float(parameters[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:
            weighted.append((-quality, position, tag))
    weighted.sort()

    languages: list[str] = []
    for _, _, tag in weighted:
        for candidate in (tag, tag.split("-")[0]):
            if candidate not in languages:
                languages.append(candidate)
    return languages

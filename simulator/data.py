"""Card and card type data: loading, validation, indexes, queries and generated cards.

A data file is a JSON object ``{"cards": [...], "card_types": [...]}`` whose records
use the field names of the CareCloud API (the ``Card`` and ``CardType`` schemas).
One extension: a card type's ``name`` may be an object that maps ISO 639-1 language
codes to names, so that ``Accept-Language`` selects the name.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_DATA_RESOURCE = "default_data.json"

# First-level fields of the spec's Card schema. Data files may add more fields,
# which are returned unchanged and can be used as sort_field too.
CARD_FIELDS = (
    "card_id",
    "customer_id",
    "card_type_id",
    "card_number",
    "secondary_card_number",
    "valid_from",
    "valid_to",
    "store_id",
    "last_change",
    "state",
)
CARD_OPTIONAL_STRING_FIELDS = ("customer_id", "secondary_card_number", "store_id", "last_change")
CARD_TYPE_FIELDS = ("card_type_id", "text_id", "name", "prefix")

# Generated card i has the primary number f"9{i:012d}" and the secondary number
# f"8{i:012d}", so a load generator can compute which numbers exist.
GENERATED_PRIMARY_PREFIX = "9"
GENERATED_SECONDARY_PREFIX = "8"
GENERATED_NUMBER_DIGITS = 12
GENERATED_VALID_FROM = "2024-01-01 00:00:00"
GENERATED_VALID_TO = "2099-12-31 23:59:59"
GENERATED_LAST_CHANGE = "2024-01-01 00:00:00"
GENERATED_STORE_ID = "8f0e1d2c3b4a59687766554433"


class DataError(ValueError):
    """Raised when a data file or a data record is invalid. The message names the record and field."""


def generated_card_number(index: int) -> str:
    """Return the primary card number of generated card ``index`` (0-based)."""
    return f"{GENERATED_PRIMARY_PREFIX}{index:0{GENERATED_NUMBER_DIGITS}d}"


def generated_secondary_card_number(index: int) -> str:
    """Return the secondary card number of generated card ``index`` (0-based)."""
    return f"{GENERATED_SECONDARY_PREFIX}{index:0{GENERATED_NUMBER_DIGITS}d}"


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class CardRecord:
    """One card: the fields as the API returns them, pre-serialized JSON and parsed validity bounds."""

    __slots__ = ("position", "fields", "json", "valid_from", "valid_to")

    def __init__(
        self,
        position: int,
        fields: dict[str, Any],
        json_text: str,
        valid_from: datetime | None,
        valid_to: datetime | None,
    ) -> None:
        self.position = position
        self.fields = fields
        self.json = json_text
        self.valid_from = valid_from
        self.valid_to = valid_to

    def is_valid_at(self, now: datetime) -> bool:
        """Return whether ``now`` (naive, project local time) is inside the validity range.

        A missing bound leaves that side of the range open.
        """
        if self.valid_from is not None and now < self.valid_from:
            return False
        if self.valid_to is not None and now > self.valid_to:
            return False
        return True


class CardTypeRecord:
    """One card type. ``names`` maps language codes to names, in the order the data gave them."""

    __slots__ = ("position", "fields", "names")

    def __init__(self, position: int, fields: dict[str, Any], names: dict[str, str]) -> None:
        self.position = position
        self.fields = fields
        self.names = names

    def localized(self, languages: Iterable[str]) -> dict[str, Any]:
        """Return the card type as the API returns it, with the name in the first available language.

        Falls back to the first name in the data when no requested language has one.
        """
        name = None
        for language in languages:
            name = self.names.get(language)
            if name is not None:
                break
        if name is None:
            name = next(iter(self.names.values()))
        return {key: name if key == "name" else value for key, value in self.fields.items()}


@dataclass
class CardQuery:
    """Filters of GET /cards. Every filter that is not None must match (AND)."""

    card_number: str | None = None
    card_numbers: list[str] | None = None
    search_secondary: bool = False
    customer_id: str | None = None
    card_type_id: str | None = None
    state: int | None = None
    is_valid: bool | None = None
    sort_field: str | None = None
    descending: bool = False


class DataStore:
    """Cards and card types with dict indexes by card number, secondary card number and id."""

    def __init__(self) -> None:
        self.cards: list[CardRecord] = []
        self.card_types: list[CardTypeRecord] = []
        self.cards_by_number: dict[str, CardRecord] = {}
        self.cards_by_secondary_number: dict[str, CardRecord] = {}
        self.card_types_by_id: dict[str, CardTypeRecord] = {}
        self._card_ids: set[str] = set()
        # Extra first-level fields seen in the data, which are valid sort fields too.
        self.card_sort_fields: set[str] = set(CARD_FIELDS)
        self.card_type_sort_fields: set[str] = set(CARD_TYPE_FIELDS)

    # Loading

    def add_card_types(self, raw_card_types: Any, source: str) -> None:
        if not isinstance(raw_card_types, list):
            raise DataError(f"{source}: 'card_types' must be a list, got {type(raw_card_types).__name__}")
        for index, raw in enumerate(raw_card_types):
            self._add_card_type(raw, f"{source}: card_types[{index}]")

    def add_cards(self, raw_cards: Any, source: str) -> None:
        if not isinstance(raw_cards, list):
            raise DataError(f"{source}: 'cards' must be a list, got {type(raw_cards).__name__}")
        for index, raw in enumerate(raw_cards):
            self._add_card(raw, f"{source}: cards[{index}]")

    def _add_card_type(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise DataError(f"{where} must be an object")

        card_type_id = _require_string(raw, "card_type_id", where)
        if card_type_id in self.card_types_by_id:
            raise DataError(f"{where}: duplicate card_type_id {card_type_id!r}")
        _require_string(raw, "prefix", where)
        if "text_id" in raw:
            _require_string(raw, "text_id", where)
        names = _parse_card_type_names(raw.get("name"), where)

        # "name" stays in the fields to keep its position. localized() replaces its value.
        fields = dict(raw)
        record = CardTypeRecord(len(self.card_types), fields, names)
        self.card_types.append(record)
        self.card_types_by_id[card_type_id] = record
        self.card_type_sort_fields.update(raw.keys())

    def _add_card(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise DataError(f"{where} must be an object")

        _require_string(raw, "card_number", where)
        card_type_id = _require_string(raw, "card_type_id", where)
        if card_type_id not in self.card_types_by_id:
            raise DataError(f"{where}: card_type_id {card_type_id!r} is not one of the card_types")
        state = raw.get("state")
        if type(state) is not int or state not in (0, 1):
            raise DataError(f"{where}: 'state' must be 0 (blocked) or 1 (active), got {state!r}")
        for field in CARD_OPTIONAL_STRING_FIELDS:
            if field in raw and not isinstance(raw[field], str):
                raise DataError(f"{where}: {field!r} must be a string, got {raw[field]!r}")
        valid_from = _parse_local_datetime(raw, "valid_from", where)
        valid_to = _parse_local_datetime(raw, "valid_to", where)

        fields = dict(raw)
        if "card_id" in fields:
            card_id = _require_string(raw, "card_id", where)
        else:
            card_id = f"{len(self.cards):026x}"
            fields = {"card_id": card_id, **fields}
        self._index_card(fields, card_id, valid_from, valid_to, to_json(fields), where)
        self.card_sort_fields.update(raw.keys())

    def _index_card(
        self,
        fields: dict[str, Any],
        card_id: str,
        valid_from: datetime | None,
        valid_to: datetime | None,
        json_text: str,
        where: str,
    ) -> None:
        card_number = fields["card_number"]
        secondary = fields.get("secondary_card_number")
        if card_id in self._card_ids:
            raise DataError(f"{where}: duplicate card_id {card_id!r}")
        if card_number in self.cards_by_number:
            raise DataError(f"{where}: duplicate card_number {card_number!r}")
        if secondary is not None and secondary in self.cards_by_secondary_number:
            raise DataError(f"{where}: duplicate secondary_card_number {secondary!r}")

        record = CardRecord(len(self.cards), fields, json_text, valid_from, valid_to)
        self.cards.append(record)
        self._card_ids.add(card_id)
        self.cards_by_number[card_number] = record
        if secondary is not None:
            self.cards_by_secondary_number[secondary] = record

    def add_generated_cards(self, count: int) -> None:
        """Append ``count`` synthetic active cards numbered by `generated_card_number`.

        They belong to the first card type. The JSON text is formatted directly
        because the generated values need no escaping. 100,000 cards take about
        0.5 s on a 2-core development container.
        """
        if count <= 0:
            return
        if not self.card_types:
            raise DataError("cannot generate cards: the data has no card types")
        card_type_id = self.card_types[0].fields["card_type_id"]

        # The cycle collector would scan the growing heap many times over while
        # 100,000 dicts are allocated, and none of them forms a cycle.
        collector_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._append_generated_cards(count, card_type_id)
        finally:
            if collector_was_enabled:
                gc.enable()

    def _append_generated_cards(self, count: int, card_type_id: str) -> None:
        type_json = to_json(card_type_id)
        valid_from = datetime.fromisoformat(GENERATED_VALID_FROM)
        valid_to = datetime.fromisoformat(GENERATED_VALID_TO)

        for index in range(count):
            card_id = f"9e{index:024x}"
            customer_id = f"7c{index:024x}"
            number = generated_card_number(index)
            secondary = generated_secondary_card_number(index)
            fields = {
                "card_id": card_id,
                "customer_id": customer_id,
                "card_type_id": card_type_id,
                "card_number": number,
                "secondary_card_number": secondary,
                "valid_from": GENERATED_VALID_FROM,
                "valid_to": GENERATED_VALID_TO,
                "store_id": GENERATED_STORE_ID,
                "last_change": GENERATED_LAST_CHANGE,
                "state": 1,
            }
            json_text = (
                f'{{"card_id":"{card_id}","customer_id":"{customer_id}","card_type_id":{type_json},'
                f'"card_number":"{number}","secondary_card_number":"{secondary}",'
                f'"valid_from":"{GENERATED_VALID_FROM}","valid_to":"{GENERATED_VALID_TO}",'
                f'"store_id":"{GENERATED_STORE_ID}","last_change":"{GENERATED_LAST_CHANGE}","state":1}}'
            )
            self._index_card(fields, card_id, valid_from, valid_to, json_text, f"generated card {index}")

    # Queries

    def find_cards(self, query: CardQuery, now: datetime) -> list[CardRecord]:
        """Return every card that matches ``query``, in data order or sorted by ``query.sort_field``.

        ``now`` is the current naive local time of the project, used by ``is_valid``.
        """
        candidates = self._card_number_candidates(query)
        if candidates is None:
            candidates = self.cards

        has_filters = (
            query.customer_id is not None
            or query.card_type_id is not None
            or query.state is not None
            or query.is_valid is not None
        )
        if has_filters:
            matches = [card for card in candidates if _card_matches(card, query, now)]
        else:
            matches = list(candidates)

        if query.sort_field is not None:
            _sort_records(matches, query.sort_field, query.descending)
        elif query.descending:
            matches.reverse()
        return matches

    def _card_number_candidates(self, query: CardQuery) -> list[CardRecord] | None:
        """Look up the cards named by card_number and card_number_list, or return None if neither is set."""
        if query.card_number is None and query.card_numbers is None:
            return None
        index = self.cards_by_secondary_number if query.search_secondary else self.cards_by_number

        if query.card_numbers is not None:
            numbers = set(query.card_numbers)
            if query.card_number is not None:
                numbers &= {query.card_number}
        else:
            numbers = {query.card_number}

        found = [index[number] for number in numbers if number in index]
        found.sort(key=_position)
        return found

    def find_card_types(
        self,
        *,
        name: str | None,
        text_ids: list[str] | None,
        sort_field: str | None,
        descending: bool,
        languages: list[str],
    ) -> list[dict[str, Any]]:
        """Return the card types, localized, that match the name substring and text ids."""
        localized = [record.localized(languages) for record in self.card_types]
        if name is not None:
            needle = name.casefold()
            localized = [item for item in localized if needle in item["name"].casefold()]
        if text_ids is not None:
            requested_text_ids = set(text_ids)
            localized = [item for item in localized if item.get("text_id") in requested_text_ids]

        if sort_field is not None:
            _sort_dicts(localized, sort_field, descending)
        elif descending:
            localized.reverse()
        return localized


def _position(record: CardRecord) -> int:
    return record.position


def _card_matches(card: CardRecord, query: CardQuery, now: datetime) -> bool:
    fields = card.fields
    if query.customer_id is not None and fields.get("customer_id") != query.customer_id:
        return False
    if query.card_type_id is not None and fields["card_type_id"] != query.card_type_id:
        return False
    if query.state is not None and fields["state"] != query.state:
        return False
    if query.is_valid is not None and card.is_valid_at(now) != query.is_valid:
        return False
    return True


def _sort_key(value: Any) -> tuple[bool, Any]:
    # Missing values sort before present ones in ascending order.
    return (value is not None, value)


def _sort_records(records: list[CardRecord], field: str, descending: bool) -> None:
    try:
        records.sort(key=lambda record: _sort_key(record.fields.get(field)), reverse=descending)
    except TypeError:
        # Values of different types in an extra field: compare them as text.
        records.sort(key=lambda record: _sort_key(_as_text(record.fields.get(field))), reverse=descending)


def _sort_dicts(items: list[dict[str, Any]], field: str, descending: bool) -> None:
    try:
        items.sort(key=lambda item: _sort_key(item.get(field)), reverse=descending)
    except TypeError:
        items.sort(key=lambda item: _sort_key(_as_text(item.get(field))), reverse=descending)


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _require_string(raw: Mapping[str, Any], field: str, where: str) -> str:
    value = raw.get(field)
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: {field!r} is required and must be a non-empty string, got {value!r}")
    return value


def _parse_local_datetime(raw: Mapping[str, Any], field: str, where: str) -> datetime | None:
    """Parse ``YYYY-MM-DD HH:MM:SS`` or ``YYYY-MM-DDTHH:MM:SS`` local time, or return None if absent."""
    if field not in raw:
        return None
    value = raw[field]
    if not isinstance(value, str):
        raise DataError(f"{where}: {field!r} must be a string 'YYYY-MM-DD HH:MM:SS', got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise DataError(f"{where}: {field!r} must have the form 'YYYY-MM-DD HH:MM:SS', got {value!r}") from None
    if parsed.tzinfo is not None:
        raise DataError(f"{where}: {field!r} must be local time without an offset, got {value!r}")
    return parsed


def _parse_card_type_names(raw_name: Any, where: str) -> dict[str, str]:
    if isinstance(raw_name, str) and raw_name:
        return {"": raw_name}
    if isinstance(raw_name, dict) and raw_name:
        for language, name in raw_name.items():
            if not isinstance(name, str) or not name:
                raise DataError(f"{where}: name for language {language!r} must be a non-empty string")
        return {language.lower(): name for language, name in raw_name.items()}
    raise DataError(
        f"{where}: 'name' is required: a non-empty string or an object mapping language codes to names,"
        f" got {raw_name!r}"
    )


def load_data(path: Path | None, *, generate_cards: int = 0) -> DataStore:
    """Load a data file, or the built-in default data set when ``path`` is None, then add generated cards.

    Raises DataError naming the file and what is wrong with it.
    """
    if path is None:
        source = f"built-in {DEFAULT_DATA_RESOURCE}"
        text = resources.files(__package__).joinpath(DEFAULT_DATA_RESOURCE).read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(f"{source}: cannot read the file: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: the file is not UTF-8 text: {exc}") from exc

    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(document, dict):
        raise DataError(f"{source}: the top level must be an object with 'cards' and 'card_types'")
    unknown_keys = sorted(set(document) - {"cards", "card_types"})
    if unknown_keys:
        raise DataError(f"{source}: unknown top-level keys {unknown_keys}; expected 'cards' and 'card_types'")

    store = DataStore()
    store.add_card_types(document.get("card_types", []), source)
    store.add_cards(document.get("cards", []), source)
    store.add_generated_cards(generate_cards)
    return store

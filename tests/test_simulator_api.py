"""The simulator's API endpoints over real HTTP, against the built-in default data set."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from simulator.testing import SimulatorProcess

LOGIN_BODY = {"user_external_application_id": "simulator-app", "login": "simulator", "password": "simulator"}
LOYALTY_CARD_TYPE_ID = "8bed991c68a470e7aaeffbf048"
ISIC_CARD_TYPE_ID = "8bd48117006496e0b1788109b8"
DEFAULT_CARD_COUNT = 30
BLOCKED_NUMBERS = {"1000000000023", "1000000000108", "3000000000026"}
OUTSIDE_VALIDITY_NUMBERS = {"1000000000030", "1000000000047", "1000000000108", "0920000000035"}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess() as process:
        yield process


@pytest.fixture(scope="module")
def client(sim: SimulatorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=10) as http:
        token = http.post("/users/actions/login", json=LOGIN_BODY).json()["data"]["bearer_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def card_numbers(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [card["card_number"] for card in response.json()["data"]["cards"]]


def lookup(client: httpx.Client, numbers: list[str], **params: str) -> httpx.Response:
    return client.get("/cards", params={"card_number_list[]": numbers, **params})


def invalid_param_names(response: httpx.Response) -> list[str]:
    assert response.status_code == 400, response.text
    return [param["name"] for param in response.json()["error"]["error_data"]["invalid_params"]]


# Login


def test_login_returns_token_and_expiry(sim: SimulatorProcess) -> None:
    before = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    response = httpx.post(sim.base_url + "/users/actions/login", json=LOGIN_BODY)

    assert response.status_code == 200
    data = response.json()["data"]
    assert re.fullmatch(r"[0-9a-f]{40}", data["bearer_token"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", data["valid_to"])
    valid_to = datetime.strptime(data["valid_to"], "%Y-%m-%d %H:%M:%S")
    assert before + timedelta(hours=7) <= valid_to <= before + timedelta(hours=7, seconds=5)
    assert data["user"]["login"] == "simulator"


def test_login_tokens_are_distinct(sim: SimulatorProcess) -> None:
    first = httpx.post(sim.base_url + "/users/actions/login", json=LOGIN_BODY).json()["data"]["bearer_token"]
    second = httpx.post(sim.base_url + "/users/actions/login", json=LOGIN_BODY).json()["data"]["bearer_token"]

    assert first != second


@pytest.mark.parametrize("field", ["user_external_application_id", "login", "password"])
def test_login_wrong_credential_is_403(sim: SimulatorProcess, field: str) -> None:
    response = httpx.post(sim.base_url + "/users/actions/login", json={**LOGIN_BODY, field: "wrong"})

    assert response.status_code == 403
    assert "bearer_token" not in response.text


def test_login_missing_field_is_400(sim: SimulatorProcess) -> None:
    body = {"login": "simulator"}
    response = httpx.post(sim.base_url + "/users/actions/login", json=body)

    assert invalid_param_names(response) == ["user_external_application_id", "password"]
    reasons = {param["reason"] for param in response.json()["error"]["error_data"]["invalid_params"]}
    assert reasons == {"required"}


def test_login_invalid_json_is_400(sim: SimulatorProcess) -> None:
    response = httpx.post(sim.base_url + "/users/actions/login", content=b"{not json")

    assert invalid_param_names(response) == ["body"]


# Authorization


def test_cards_without_token_is_401(sim: SimulatorProcess) -> None:
    response = httpx.get(sim.base_url + "/cards")

    assert response.status_code == 401
    assert response.json()["error"]["title"] == "Unauthorized"


def test_cards_with_unknown_token_is_401(sim: SimulatorProcess) -> None:
    response = httpx.get(sim.base_url + "/cards", headers={"Authorization": "Bearer " + "0" * 40})

    assert response.status_code == 401


def test_cards_with_basic_auth_is_401(sim: SimulatorProcess) -> None:
    response = httpx.get(sim.base_url + "/cards", auth=("simulator", "simulator"))

    assert response.status_code == 401


# Card lookup by number


def test_card_number_list_returns_each_match(client: httpx.Client) -> None:
    response = lookup(client, ["1000000000016", "2000000000025", "9999999999999"])

    assert sorted(card_numbers(response)) == ["1000000000016", "2000000000025"]
    assert response.json()["data"]["total_items"] == 2


def test_card_number_list_sent_in_url(sim: SimulatorProcess, client: httpx.Client) -> None:
    query = "card_number_list[]=CARD10101&card_number_list[]=0001234567890"
    response = client.get(f"/cards?{query}")

    assert sorted(card_numbers(response)) == ["0001234567890", "CARD10101"]


def test_card_number_list_repeated_value_returns_card_once(client: httpx.Client) -> None:
    response = lookup(client, ["CARD10101", "CARD10101"])

    assert card_numbers(response) == ["CARD10101"]


def test_card_number_list_without_brackets_is_400(client: httpx.Client) -> None:
    response = client.get("/cards", params={"card_number_list": "CARD10101"})

    assert invalid_param_names(response) == ["card_number_list"]


def test_card_number_filter(client: httpx.Client) -> None:
    assert card_numbers(client.get("/cards", params={"card_number": "1000000000016"})) == ["1000000000016"]
    assert card_numbers(client.get("/cards", params={"card_number": "1000000000017"})) == []


def test_card_number_and_list_combine_with_and(client: httpx.Client) -> None:
    response = lookup(client, ["1000000000016", "2000000000025"], card_number="2000000000025")

    assert card_numbers(response) == ["2000000000025"]


def test_leading_zeros_are_kept(client: httpx.Client) -> None:
    response = lookup(client, ["0001234567890", "1234567890", "0000000000000"])
    cards = response.json()["data"]["cards"]

    assert sorted(card_numbers(response)) == ["0000000000000", "0001234567890"]
    assert all(isinstance(card["card_number"], str) for card in cards)


def test_zero_numbers_of_other_length_differ(client: httpx.Client) -> None:
    assert card_numbers(lookup(client, ["00000000000000000000"])) == ["00000000000000000000"]
    assert card_numbers(lookup(client, ["0"])) == []


def test_card_numbers_match_case_sensitively(client: httpx.Client) -> None:
    upper = client.get("/cards", params={"card_number": "CARD10101"}).json()["data"]["cards"]
    lower = client.get("/cards", params={"card_number": "card10101"}).json()["data"]["cards"]

    assert [card["card_number"] for card in upper] == ["CARD10101"]
    assert [card["card_number"] for card in lower] == ["card10101"]
    assert upper[0]["card_id"] != lower[0]["card_id"]
    assert card_numbers(lookup(client, ["Card10101", "abc123xyz"])) == []
    assert card_numbers(lookup(client, ["AbC123xYz"])) == ["AbC123xYz"]


# Secondary card numbers


def test_secondary_search_finds_secondary_number(client: httpx.Client) -> None:
    response = lookup(client, ["AXNFUAIOHFDSNKA"], search_secondary_card_number="true")
    cards = response.json()["data"]["cards"]

    assert card_numbers(response) == ["1000000000016"]
    assert cards[0]["secondary_card_number"] == "AXNFUAIOHFDSNKA"


def test_primary_search_ignores_secondary_numbers(client: httpx.Client) -> None:
    assert card_numbers(lookup(client, ["AXNFUAIOHFDSNKA"])) == []
    assert card_numbers(lookup(client, ["AXNFUAIOHFDSNKA"], search_secondary_card_number="false")) == []


def test_secondary_search_ignores_primary_numbers(client: httpx.Client) -> None:
    response = lookup(client, ["1000000000016", "CARD10101"], search_secondary_card_number="true")

    assert card_numbers(response) == []


def test_secondary_only_card(client: httpx.Client) -> None:
    assert card_numbers(lookup(client, ["SEC-ONLY-0099887766"])) == []
    secondary = lookup(client, ["SEC-ONLY-0099887766"], search_secondary_card_number="true")
    assert card_numbers(secondary) == ["1000000000085"]


def test_number_that_is_primary_and_secondary(client: httpx.Client) -> None:
    primary = lookup(client, ["2000000000025"])
    secondary = lookup(client, ["2000000000025"], search_secondary_card_number="true")

    assert card_numbers(primary) == ["2000000000025"]
    assert card_numbers(secondary) == ["1000000000092"]


def test_secondary_search_with_card_number(client: httpx.Client) -> None:
    response = client.get("/cards", params={"card_number": "AXNFUAIOHFDSNKA", "search_secondary_card_number": "true"})

    assert card_numbers(response) == ["1000000000016"]


def test_secondary_numbers_match_case_sensitively(client: httpx.Client) -> None:
    exact = lookup(client, ["s0920000000028"], search_secondary_card_number="true")
    other_case = lookup(client, ["S0920000000028"], search_secondary_card_number="true")

    assert card_numbers(exact) == ["0920000000028"]
    assert card_numbers(other_case) == []


# Filters


def test_state_filter(client: httpx.Client) -> None:
    blocked = card_numbers(client.get("/cards", params={"state": "0"}))
    active = client.get("/cards", params={"state": "1"}).json()["data"]

    assert set(blocked) == BLOCKED_NUMBERS
    assert active["total_items"] == DEFAULT_CARD_COUNT - len(BLOCKED_NUMBERS)


def test_is_valid_filter(client: httpx.Client) -> None:
    outside = card_numbers(client.get("/cards", params={"is_valid": "false"}))
    inside = client.get("/cards", params={"is_valid": "true"}).json()["data"]

    assert set(outside) == OUTSIDE_VALIDITY_NUMBERS
    assert inside["total_items"] == DEFAULT_CARD_COUNT - len(OUTSIDE_VALIDITY_NUMBERS)


def test_is_valid_treats_missing_bounds_as_open(client: httpx.Client) -> None:
    numbers = ["0000000000017", "1000000000054", "1000000000061", "1000000000078"]

    assert sorted(card_numbers(lookup(client, numbers, is_valid="true"))) == numbers
    assert card_numbers(lookup(client, numbers, is_valid="false")) == []


def test_customer_id_filter(client: httpx.Client) -> None:
    response = client.get("/cards", params={"customer_id": "8ea2591121e636086a4a9c0901"})

    assert sorted(card_numbers(response)) == ["1000000000016", "1000000000115"]


def test_card_type_id_filter(client: httpx.Client) -> None:
    response = client.get("/cards", params={"card_type_id": ISIC_CARD_TYPE_ID})

    assert sorted(card_numbers(response)) == ["0920000000011", "0920000000028", "0920000000035"]


def test_filters_combine_with_and(client: httpx.Client) -> None:
    params = {"card_type_id": LOYALTY_CARD_TYPE_ID, "state": "0", "is_valid": "false"}

    assert card_numbers(client.get("/cards", params=params)) == ["1000000000108"]


def test_filters_apply_to_card_number_list(client: httpx.Client) -> None:
    response = lookup(client, ["1000000000016", "1000000000023", "1000000000030"], state="1", is_valid="true")

    assert card_numbers(response) == ["1000000000016"]


def test_unmatched_filter_returns_empty_page(client: httpx.Client) -> None:
    data = client.get("/cards", params={"customer_id": "no-such-customer"}).json()["data"]

    assert data == {"cards": [], "total_items": 0}


# Paging and sorting


def test_paging_with_offset_covers_all_cards(client: httpx.Client) -> None:
    seen: list[str] = []
    for offset in range(0, DEFAULT_CARD_COUNT + 7, 7):
        data = client.get("/cards", params={"count": "7", "offset": str(offset)}).json()["data"]
        assert data["total_items"] == DEFAULT_CARD_COUNT
        assert len(data["cards"]) == min(7, max(0, DEFAULT_CARD_COUNT - offset))
        seen += [card["card_number"] for card in data["cards"]]

    assert len(seen) == DEFAULT_CARD_COUNT
    assert len(set(seen)) == DEFAULT_CARD_COUNT


def test_default_count_is_100(client: httpx.Client) -> None:
    data = client.get("/cards").json()["data"]

    assert len(data["cards"]) == DEFAULT_CARD_COUNT
    assert data["total_items"] == DEFAULT_CARD_COUNT


def test_offset_past_end_returns_total(client: httpx.Client) -> None:
    data = client.get("/cards", params={"offset": "500"}).json()["data"]

    assert data == {"cards": [], "total_items": DEFAULT_CARD_COUNT}


def test_paging_applies_to_card_number_list(client: httpx.Client) -> None:
    numbers = ["1000000000016", "2000000000025", "CARD10101"]
    first = lookup(client, numbers, count="2").json()["data"]
    rest = lookup(client, numbers, count="2", offset="2").json()["data"]

    assert len(first["cards"]) == 2
    assert len(rest["cards"]) == 1
    assert first["total_items"] == 3
    assert rest["total_items"] == 3


@pytest.mark.parametrize("field", ["card_number", "card_id", "valid_to", "last_change"])
def test_sort_by_string_field(client: httpx.Client, field: str) -> None:
    ascending = client.get("/cards", params={"sort_field": field, "sort_direction": "ASC"}).json()["data"]["cards"]
    descending = client.get("/cards", params={"sort_field": field, "sort_direction": "DESC"}).json()["data"]["cards"]

    values = [card.get(field) for card in ascending]
    present = [value for value in values if value is not None]
    missing = [None] * (len(values) - len(present))
    assert values == missing + sorted(present)
    assert [card.get(field) for card in descending] == sorted(present, reverse=True) + missing


def test_sort_by_state(client: httpx.Client) -> None:
    cards = client.get("/cards", params={"sort_field": "state", "sort_direction": "DESC"}).json()["data"]["cards"]
    states = [card["state"] for card in cards]

    assert states == sorted(states, reverse=True)
    assert states[-3:] == [0, 0, 0]


def test_sort_without_direction_is_ascending(client: httpx.Client) -> None:
    cards = client.get("/cards", params={"sort_field": "card_number"}).json()["data"]["cards"]
    numbers = [card["card_number"] for card in cards]

    assert numbers == sorted(numbers)


def test_sort_then_page(client: httpx.Client) -> None:
    all_numbers = sorted(card_numbers(client.get("/cards")))
    params = {"sort_field": "card_number", "sort_direction": "ASC", "count": "5", "offset": "5"}

    assert card_numbers(client.get("/cards", params=params)) == all_numbers[5:10]


# Invalid parameters


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("count", "0"),
        ("count", "-3"),
        ("count", "ten"),
        ("offset", "-1"),
        ("offset", "1.5"),
        ("state", "7"),
        ("state", "active"),
        ("sort_direction", "UP"),
        ("sort_direction", "asc"),
        ("sort_field", "no_such_field"),
        ("is_valid", "yes"),
        ("is_valid", "True"),
        ("search_secondary_card_number", "1"),
        ("unknown_filter", "x"),
    ],
)
def test_invalid_param_is_400(client: httpx.Client, name: str, value: str) -> None:
    response = client.get("/cards", params={name: value})

    assert invalid_param_names(response) == [name]
    invalid = response.json()["error"]["error_data"]["invalid_params"][0]
    assert invalid["value"] == value
    assert invalid["reason"]


def test_every_invalid_param_is_listed(client: httpx.Client) -> None:
    response = client.get("/cards", params={"count": "0", "offset": "-1", "state": "7"})

    assert sorted(invalid_param_names(response)) == ["count", "offset", "state"]


def test_card_number_list_over_1000_is_400(client: httpx.Client) -> None:
    numbers = [f"{i:013d}" for i in range(1001)]

    assert invalid_param_names(lookup(client, numbers)) == ["card_number_list"]


def test_card_number_list_of_1000_is_accepted(client: httpx.Client) -> None:
    numbers = [f"{i:013d}" for i in range(999)] + ["CARD10101"]

    found = card_numbers(lookup(client, numbers))

    assert sorted(found) == ["0000000000000", "0000000000017", "CARD10101"]


# Card types


def test_card_types_list(client: httpx.Client) -> None:
    data = client.get("/card-types", headers={"Accept-Language": "en"}).json()["data"]

    assert data["total_items"] == 4
    assert [item["text_id"] for item in data["card_types"]] == ["loyalty_card", "isic_card", "virtual_card", "gift_card"]
    assert data["card_types"][0]["name"] == "Loyalty card"


@pytest.mark.parametrize(
    ("accept_language", "expected"),
    [
        ("en", "Loyalty card"),
        ("en-GB", "Loyalty card"),
        ("cs", "Věrnostní karta"),
        ("cs-CZ, en;q=0.5", "Věrnostní karta"),
        ("cs;q=0.2, en;q=0.9", "Loyalty card"),
        ("de", "Loyalty card"),
    ],
)
def test_card_type_name_follows_accept_language(client: httpx.Client, accept_language: str, expected: str) -> None:
    response = client.get(f"/card-types/{LOYALTY_CARD_TYPE_ID}", headers={"Accept-Language": accept_language})

    assert response.status_code == 200
    assert response.json()["data"]["name"] == expected


def test_card_type_name_defaults_to_czech(client: httpx.Client) -> None:
    response = client.get(f"/card-types/{LOYALTY_CARD_TYPE_ID}")

    assert response.json()["data"]["name"] == "Věrnostní karta"


def test_card_type_by_id(client: httpx.Client) -> None:
    data = client.get(f"/card-types/{ISIC_CARD_TYPE_ID}").json()["data"]

    assert data["card_type_id"] == ISIC_CARD_TYPE_ID
    assert data["text_id"] == "isic_card"
    assert data["prefix"] == "092"


def test_unknown_card_type_is_404(client: httpx.Client) -> None:
    response = client.get("/card-types/no-such-type")

    assert response.status_code == 404
    assert response.json()["error"]["error_data"] == {"resource_name": "card-types", "resource_id": "no-such-type"}


def test_card_types_paging_and_sorting(client: httpx.Client) -> None:
    params = {"sort_field": "prefix", "sort_direction": "DESC", "count": "2", "offset": "1"}
    data = client.get("/card-types", params=params).json()["data"]

    assert [item["prefix"] for item in data["card_types"]] == ["100", "092"]
    assert data["total_items"] == 4


def test_card_types_name_filter(client: httpx.Client) -> None:
    response = client.get("/card-types", params={"name": "card"}, headers={"Accept-Language": "en"})
    names = [item["name"] for item in response.json()["data"]["card_types"]]

    assert names == ["Loyalty card", "ISIC student card", "Virtual card", "Gift card"]
    isic = client.get("/card-types", params={"name": "isic"}, headers={"Accept-Language": "en"})
    assert [item["text_id"] for item in isic.json()["data"]["card_types"]] == ["isic_card"]


def test_card_types_text_id_filter(client: httpx.Client) -> None:
    single = client.get("/card-types", params={"text_id": "gift_card"}).json()["data"]
    several = client.get("/card-types", params={"text_id[]": ["gift_card", "isic_card"]}).json()["data"]

    assert [item["text_id"] for item in single["card_types"]] == ["gift_card"]
    assert [item["text_id"] for item in several["card_types"]] == ["isic_card", "gift_card"]


def test_card_types_require_token(sim: SimulatorProcess) -> None:
    assert httpx.get(sim.base_url + "/card-types").status_code == 401
    assert httpx.get(sim.base_url + f"/card-types/{ISIC_CARD_TYPE_ID}").status_code == 401


# Other paths and methods


@pytest.mark.parametrize("path", ["/customers", "/cards/extra", "", "/card-types/a/b"])
def test_unknown_path_is_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.json()["error"]["title"] == "Not Found"


@pytest.mark.parametrize(("method", "path"), [("POST", "/cards"), ("DELETE", "/cards"), ("GET", "/users/actions/login")])
def test_wrong_method_is_405(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)

    assert response.status_code == 405
    assert response.json()["error"]["error_data"] == {"http_method": method}
    assert response.headers["allow"]


def test_path_outside_base_is_404(sim: SimulatorProcess) -> None:
    response = httpx.get(sim.url + "/webservice/rest-api/enterprise-interface/v2.0/cards")

    assert response.status_code == 404

"""The CareCloud client against an in-process mock transport (respx): auth, paging, retries."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from schemas.replies import ErrorKind
from worker.carecloud import CareCloudClient
from worker.errors import LookupFailed
from worker.limit import Limiter
from worker.settings import load_settings

BASE = "http://carecloud.test/webservice/rest-api/enterprise-interface/v1.0"


def make_client(**overrides) -> CareCloudClient:
    settings = load_settings(api_base_url=BASE, api_backoff_initial_s=0.01, api_backoff_max_s=0.02, **overrides)

    async def no_sleep(_seconds: float) -> None:
        await asyncio.sleep(0)

    return CareCloudClient(settings, Limiter.from_settings(settings), sleep=no_sleep)


def login_route(router: respx.Router, tokens: list[str]) -> respx.Route:
    answers = iter(tokens)
    return router.post(f"{BASE}/users/actions/login").mock(
        side_effect=lambda request: httpx.Response(200, json={"data": {"bearer_token": next(answers), "valid_to": "2999-01-01 00:00:00"}})
    )


def card_numbers_of(request: httpx.Request) -> list[str]:
    return parse_qs(urlsplit(str(request.url)).query)["card_number_list[]"]


@respx.mock
async def test_cards_query_uses_repeated_bracket_key():
    login_route(respx.mock, ["t1"])
    route = respx.get(f"{BASE}/cards").mock(
        return_value=httpx.Response(200, json={"data": {"cards": [{"card_number": "0012"}], "total_items": 1}})
    )
    client = make_client()
    cards = await client.get_cards(["0012", "AbC"], secondary=True)

    request = route.calls.last.request
    assert "card_number_list%5B%5D=0012&card_number_list%5B%5D=AbC" in str(request.url)
    query = parse_qs(urlsplit(str(request.url)).query)
    assert query["count"] == ["2"]
    assert query["search_secondary_card_number"] == ["true"]
    assert request.headers["Authorization"] == "Bearer t1"
    assert [card.card_number for card in cards] == ["0012"]


@respx.mock
async def test_pages_followed_until_total_items():
    login_route(respx.mock, ["t1"])
    pages = {
        "0": {"cards": [{"card_number": "A"}, {"card_number": "B"}], "total_items": 3},
        "2": {"cards": [{"card_number": "C"}], "total_items": 3},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        offset = parse_qs(urlsplit(str(request.url)).query)["offset"][0]
        return httpx.Response(200, json={"data": pages[offset]})

    route = respx.get(f"{BASE}/cards").mock(side_effect=answer)
    cards = await make_client().get_cards(["A", "B", "C"], secondary=False)
    assert [card.card_number for card in cards] == ["A", "B", "C"]
    assert route.call_count == 2


@respx.mock
async def test_concurrent_401s_share_one_login():
    login = login_route(respx.mock, ["old", "new"])

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer old":
            return httpx.Response(401, json={"error": {"title": "token expired"}})
        return httpx.Response(200, json={"data": {"cards": [], "total_items": 0}})

    respx.get(f"{BASE}/cards").mock(side_effect=answer)
    client = make_client()
    await asyncio.gather(*(client.get_cards([f"N{i}"], secondary=False) for i in range(10)))
    assert login.call_count == 2


@respx.mock
async def test_bad_request_not_retried_and_reason_kept():
    login_route(respx.mock, ["t1"])
    body = {"error": {"title": "Invalid parameter", "error_data": {"invalid_params": [{"name": "count", "reason": "not_allowed_value"}]}}}
    route = respx.get(f"{BASE}/cards").mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(LookupFailed) as failure:
        await make_client().get_cards(["A"], secondary=False)
    assert failure.value.kind is ErrorKind.REJECTED
    assert "count: not_allowed_value" in failure.value.message
    assert failure.value.attempts == 1
    assert route.call_count == 1


@respx.mock
async def test_unavailable_retried_up_to_max_attempts():
    login_route(respx.mock, ["t1"])
    route = respx.get(f"{BASE}/cards").mock(return_value=httpx.Response(503))
    with pytest.raises(LookupFailed) as failure:
        await make_client(api_max_attempts=3, api_adaptive_concurrency=False).get_cards(["A"], secondary=False)
    assert failure.value.kind is ErrorKind.UNAVAILABLE
    assert failure.value.attempts == 3
    assert route.call_count == 3


@respx.mock
async def test_timeout_reported_as_timeout():
    login_route(respx.mock, ["t1"])
    respx.get(f"{BASE}/cards").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(LookupFailed) as failure:
        await make_client(api_max_attempts=2).get_cards(["A"], secondary=False)
    assert failure.value.kind is ErrorKind.TIMEOUT
    assert failure.value.attempts == 2


@respx.mock
async def test_server_error_then_success():
    login_route(respx.mock, ["t1"])
    route = respx.get(f"{BASE}/cards").mock(
        side_effect=[httpx.Response(502), httpx.Response(200, json={"data": {"cards": [{"card_number": "A"}], "total_items": 1}})]
    )
    cards = await make_client().get_cards(["A"], secondary=False)
    assert [card.card_number for card in cards] == ["A"]
    assert route.call_count == 2
    assert all(len(card_numbers_of(call.request)) == 1 for call in route.calls)

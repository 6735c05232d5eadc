"""Fault injection, statistics and the call log of a running simulator, over real HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from simulator.testing import SimulatorProcess

LOGIN_BODY = {"user_external_application_id": "simulator-app", "login": "simulator", "password": "simulator"}
WAIT_LIMIT_S = 5.0  # upper bound for any wait in these tests
POLL_INTERVAL_S = 0.05


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess() as process:
        yield process


@pytest.fixture(autouse=True)
def clean_simulator(sim: SimulatorProcess) -> Iterator[None]:
    sim.reset_faults()
    sim.reset()
    yield
    sim.reset_faults()


def login(sim: SimulatorProcess) -> str:
    response = httpx.post(sim.base_url + "/users/actions/login", json=LOGIN_BODY)
    assert response.status_code == 200, response.text
    return response.json()["data"]["bearer_token"]


def get_cards(sim: SimulatorProcess, token: str, numbers: list[str] | None = None) -> httpx.Response:
    params = {"card_number_list[]": numbers} if numbers is not None else {}
    return httpx.get(sim.base_url + "/cards", params=params, headers={"Authorization": f"Bearer {token}"})


def wait_for_stats(sim: SimulatorProcess, key: str, expected: int) -> dict:
    deadline = time.monotonic() + WAIT_LIMIT_S
    stats = sim.stats()
    while stats[key] != expected and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        stats = sim.stats()
    return stats


# Tokens


def test_expire_tokens_gives_401(sim: SimulatorProcess) -> None:
    token = login(sim)
    assert get_cards(sim, token).status_code == 200

    sim.set_faults(expire_tokens=True)

    assert get_cards(sim, token).status_code == 401
    assert get_cards(sim, login(sim)).status_code == 200


def test_token_expires_after_ttl(sim: SimulatorProcess) -> None:
    sim.set_faults(token_ttl_s=0.5)
    token = login(sim)
    assert get_cards(sim, token).status_code == 200

    time.sleep(0.6)

    assert get_cards(sim, token).status_code == 401


def test_token_ttl_applies_to_new_tokens_only(sim: SimulatorProcess) -> None:
    old_token = login(sim)
    sim.set_faults(token_ttl_s=0.3)
    new_token = login(sim)

    time.sleep(0.4)

    assert get_cards(sim, old_token).status_code == 200
    assert get_cards(sim, new_token).status_code == 401


# Rate limit


def test_rate_limit_retry_after_seconds(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(rate_limit_per_s=0.25, rate_limit_burst=1)

    assert get_cards(sim, token).status_code == 200
    limited = get_cards(sim, token)

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "4"


def test_rate_limit_retry_after_date(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(rate_limit_per_s=0.25, rate_limit_burst=1, retry_after="date")
    assert get_cards(sim, token).status_code == 200

    sent_at = time.time()
    limited = get_cards(sim, token)

    assert limited.status_code == 429
    header = limited.headers["retry-after"]
    assert header.endswith(" GMT")
    retry_at = parsedate_to_datetime(header).timestamp()
    # The HTTP-date has whole seconds, so it may be up to 1 s before the exact time.
    assert retry_at >= int(sent_at)
    assert retry_at <= sent_at + 4 + 1


def test_rate_limit_without_retry_after(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(rate_limit_per_s=0.25, rate_limit_burst=1, retry_after="none")
    assert get_cards(sim, token).status_code == 200

    limited = get_cards(sim, token)

    assert limited.status_code == 429
    assert "retry-after" not in limited.headers


@pytest.mark.parametrize("value", ["2", "garbage", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_rate_limit_literal_retry_after(sim: SimulatorProcess, value: str) -> None:
    token = login(sim)
    sim.set_faults(rate_limit_per_s=0.25, rate_limit_burst=1, retry_after_value=value)
    assert get_cards(sim, token).status_code == 200

    limited = get_cards(sim, token)

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == value


def test_rate_limit_burst_then_refill(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(rate_limit_per_s=2, rate_limit_burst=3)

    statuses = [get_cards(sim, token).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]

    time.sleep(0.6)
    assert get_cards(sim, token).status_code == 200


def test_rate_limit_counts_login(sim: SimulatorProcess) -> None:
    sim.set_faults(rate_limit_per_s=0.25, rate_limit_burst=1)
    login(sim)

    response = httpx.post(sim.base_url + "/users/actions/login", json=LOGIN_BODY)

    assert response.status_code == 429


def test_rate_limit_off_with_null(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(rate_limit_per_s=0.25, rate_limit_burst=1)
    sim.set_faults(rate_limit_per_s=None)

    assert [get_cards(sim, token).status_code for _ in range(3)] == [200, 200, 200]


# Unavailable window


def test_unavailable_window_ends_by_itself(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(unavailable_for_s=0.5)

    unavailable = get_cards(sim, token)
    assert unavailable.status_code == 503
    assert unavailable.headers["retry-after"] == "1"
    assert httpx.post(sim.base_url + "/users/actions/login", json=LOGIN_BODY).status_code == 503

    deadline = time.monotonic() + WAIT_LIMIT_S
    status = unavailable.status_code
    while status == 503 and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        status = get_cards(sim, token).status_code
    assert status == 200
    assert sim.faults()["unavailable_for_s"] == 0


def test_unavailable_window_cancelled_with_zero(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(unavailable_for_s=60)
    assert get_cards(sim, token).status_code == 503

    sim.set_faults(unavailable_for_s=0)

    assert get_cards(sim, token).status_code == 200


# Forced failures


def test_fail_next_fails_count_calls(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(fail_next={"status": 503, "count": 2, "retry_after": "7"})

    first, second, third = (get_cards(sim, token) for _ in range(3))

    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["retry-after"] == "7"
    assert second.headers["retry-after"] == "7"
    assert sim.faults()["fail_next"] is None


def test_fail_next_skips_login_by_default(sim: SimulatorProcess) -> None:
    sim.set_faults(fail_next={"status": 500, "count": 1})

    token = login(sim)

    assert get_cards(sim, token).status_code == 500
    assert get_cards(sim, token).status_code == 200


def test_fail_next_include_login(sim: SimulatorProcess) -> None:
    sim.set_faults(fail_next={"status": 502, "count": 1, "include_login": True})

    response = httpx.post(sim.base_url + "/users/actions/login", json=LOGIN_BODY)

    assert response.status_code == 502
    login(sim)


@pytest.mark.parametrize("status", [400, 403, 429, 500, 502, 503, 504])
def test_fail_next_status(sim: SimulatorProcess, status: int) -> None:
    token = login(sim)
    sim.set_faults(fail_next={"status": status, "count": 1, "retry_after": None})

    response = get_cards(sim, token)

    assert response.status_code == status
    assert "retry-after" not in response.headers
    assert "error" in response.json()


def test_fail_next_runs_after_rate_limit(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(rate_limit_per_s=0.25, rate_limit_burst=1, fail_next={"status": 500, "count": 1})

    assert get_cards(sim, token).status_code == 500
    assert get_cards(sim, token).status_code == 429
    assert sim.faults()["fail_next"] is None


# Latency and stalls


def test_latency_delays_calls(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(latency_ms=200, latency_jitter_ms=50)

    started = time.monotonic()
    response = get_cards(sim, token)
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.2
    assert elapsed < 2.0


def test_latency_does_not_delay_control_api(sim: SimulatorProcess) -> None:
    sim.set_faults(latency_ms=1000)

    started = time.monotonic()
    sim.stats()

    assert time.monotonic() - started < 0.5


def test_stall_delays_calls_until_released(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(stall=True)
    results: list[int] = []
    caller = threading.Thread(target=lambda: results.append(get_cards(sim, token).status_code))
    caller.start()

    stats = wait_for_stats(sim, "concurrent_calls", 1)
    assert stats["concurrent_calls"] == 1
    caller.join(timeout=0.3)
    assert caller.is_alive()
    assert results == []

    sim.set_faults(stall=False)
    caller.join(timeout=WAIT_LIMIT_S)

    assert not caller.is_alive()
    assert results == [200]


def test_stall_ends_with_503_after_max(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(stall=True, stall_max_s=0.3)

    started = time.monotonic()
    response = get_cards(sim, token)

    assert response.status_code == 503
    assert time.monotonic() - started >= 0.3


# Statistics and the call log


def test_stats_count_calls(sim: SimulatorProcess) -> None:
    token = login(sim)
    get_cards(sim, token, ["1000000000016", "CARD10101"])
    get_cards(sim, token)
    get_cards(sim, token, [f"{i:013d}" for i in range(5)])
    get_cards(sim, "bad-token", ["1"])
    httpx.get(sim.base_url + "/card-types/8bed991c68a470e7aaeffbf048", headers={"Authorization": f"Bearer {token}"})

    stats = sim.stats()

    assert stats["requests_by_endpoint"] == {
        "GET /card-types/{card_type_id}": {"200": 1},
        "GET /cards": {"200": 3, "401": 1},
        "POST /users/actions/login": {"200": 1},
    }
    assert stats["cards_calls"] == 4
    assert stats["card_numbers_requested"] == 8
    assert stats["card_numbers_per_call"] == {"0": 1, "1": 1, "2": 1, "5": 1}
    assert stats["max_card_numbers_per_call"] == 5
    assert stats["logins"] == 1
    assert stats["concurrent_calls"] == 0


def test_stats_count_rejected_calls(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(fail_next={"status": 429, "count": 1})
    get_cards(sim, token, ["1", "2", "3"])

    stats = sim.stats()

    assert stats["requests_by_endpoint"]["GET /cards"] == {"429": 1}
    assert stats["card_numbers_requested"] == 3


def test_failed_login_not_counted_as_login(sim: SimulatorProcess) -> None:
    httpx.post(sim.base_url + "/users/actions/login", json={**LOGIN_BODY, "password": "wrong"})

    stats = sim.stats()

    assert stats["logins"] == 0
    assert stats["requests_by_endpoint"]["POST /users/actions/login"] == {"403": 1}


async def test_max_concurrent_calls(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(latency_ms=300)

    async with httpx.AsyncClient(base_url=sim.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        responses = await asyncio.gather(*(client.get("/cards") for _ in range(5)))

    assert [response.status_code for response in responses] == [200] * 5
    stats = sim.stats()
    assert stats["max_concurrent_calls"] == 5
    assert stats["concurrent_calls"] == 0


def test_calls_log_entries(sim: SimulatorProcess) -> None:
    started = time.time()
    token = login(sim)
    get_cards(sim, token, ["1000000000016", "CARD10101", "x"])
    finished = time.time()

    calls = sim.calls()

    assert [(call["endpoint"], call["status"], call["card_numbers"]) for call in calls] == [
        ("POST /users/actions/login", 200, 0),
        ("GET /cards", 200, 3),
    ]
    assert all(started <= call["t"] <= finished for call in calls)


def test_calls_since_filters_by_arrival(sim: SimulatorProcess) -> None:
    token = login(sim)
    middle = time.time()
    get_cards(sim, token)

    assert [call["endpoint"] for call in sim.calls(since=middle)] == ["GET /cards"]
    assert sim.calls(since=time.time() + 60) == []


def test_calls_record_arrival_time(sim: SimulatorProcess) -> None:
    token = login(sim)
    sim.set_faults(latency_ms=300)
    sent_at = time.time()
    get_cards(sim, token)

    (call,) = sim.calls(since=sent_at)

    assert call["t"] - sent_at < 0.25


def test_reset_clears_counters_not_data(sim: SimulatorProcess) -> None:
    token = login(sim)
    get_cards(sim, token, ["CARD10101"])

    sim.reset()

    stats = sim.stats()
    assert stats["requests_by_endpoint"] == {}
    assert stats["cards_calls"] == 0
    assert sim.calls() == []
    assert get_cards(sim, token, ["CARD10101"]).json()["data"]["total_items"] == 1


def test_control_calls_not_counted(sim: SimulatorProcess) -> None:
    sim.faults()
    sim.calls()
    httpx.get(sim.url + "/_simulator/health")

    assert sim.stats()["requests_by_endpoint"] == {}


# Control API validation


def test_health(sim: SimulatorProcess) -> None:
    assert httpx.get(sim.url + "/_simulator/health").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"latency": 5}, "latency"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": "fast"}, "latency_ms"),
        ({"rate_limit_burst": 0}, "rate_limit_burst"),
        ({"retry_after": "minutes"}, "retry_after"),
        ({"fail_next": {"status": 418, "count": 1}}, "fail_next.status"),
        ({"fail_next": {"status": 503, "count": -1}}, "fail_next.count"),
        ({"fail_next": {"status": 503, "times": 1}}, "fail_next.times"),
        ({"stall": "yes"}, "stall"),
        ({"token_ttl_s": 0}, "token_ttl_s"),
        ({"expire_tokens": 1}, "expire_tokens"),
    ],
)
def test_invalid_fault_setting_is_400(sim: SimulatorProcess, body: dict, field: str) -> None:
    response = httpx.post(sim.url + "/_simulator/faults", json=body)

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert field in response.json()["error"]


def test_invalid_update_changes_nothing(sim: SimulatorProcess) -> None:
    response = httpx.post(sim.url + "/_simulator/faults", json={"latency_ms": 50, "bogus": 1})

    assert response.status_code == 400
    assert sim.faults()["latency_ms"] == 0


def test_fault_update_returns_current_settings(sim: SimulatorProcess) -> None:
    faults = sim.set_faults(latency_ms=5, rate_limit_per_s=20)

    assert faults["latency_ms"] == 5
    assert faults["rate_limit_per_s"] == 20
    assert faults["rate_limit_burst"] == 20
    assert faults["retry_after"] == "seconds"


def test_calls_since_must_be_number(sim: SimulatorProcess) -> None:
    response = httpx.get(sim.url + "/_simulator/calls", params={"since": "yesterday"})

    assert response.status_code == 400

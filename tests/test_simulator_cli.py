"""The simulator's command line: start-up options, errors and generated cards, through real processes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from simulator.__main__ import build_parser
from simulator.data import generated_card_number, generated_secondary_card_number
from simulator.testing import SimulatorProcess, SimulatorStartError

LOGIN_BODY = {"user_external_application_id": "simulator-app", "login": "simulator", "password": "simulator"}
PROCESS_TIMEOUT_S = 20
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
CARD_TYPE = {"card_type_id": "t1", "text_id": "loyalty_card", "name": "Loyalty", "prefix": "1"}


def run_simulator(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the simulator with arguments that make it exit before serving."""
    return subprocess.run(
        [sys.executable, "-m", "simulator", "--port", "0", *arguments],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        cwd=REPOSITORY_ROOT,
    )


def login(client: httpx.Client, body: dict[str, str] = LOGIN_BODY) -> httpx.Response:
    response = client.post("/users/actions/login", json=body)
    if response.status_code == 200:
        client.headers["Authorization"] = "Bearer " + response.json()["data"]["bearer_token"]
    return response


# Errors at start


def test_invalid_data_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "cards.json"
    path.write_text(json.dumps({"cards": [{"card_number": "1", "card_type_id": "t9", "state": 1}], "card_types": []}))

    result = run_simulator("--data", str(path))

    assert result.returncode == 2
    assert str(path) in result.stderr
    assert "card_type_id 't9' is not one of the card_types" in result.stderr
    assert result.stdout == ""


def test_missing_data_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"

    result = run_simulator("--data", str(path))

    assert result.returncode == 2
    assert f"{path}: cannot read the file" in result.stderr


def test_unknown_timezone_exits_2() -> None:
    result = run_simulator("--timezone", "Europe/Atlantis")

    assert result.returncode == 2
    assert "Europe/Atlantis" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (("--latency-ms", "-5"), "--latency-ms"),
        (("--fail-next-status", "418"), "--fail-next"),
        (("--rate-limit-burst", "0"), "--rate-limit-burst"),
    ],
)
def test_invalid_fault_option_exits_2(arguments: tuple[str, ...], option: str) -> None:
    result = run_simulator(*arguments)

    assert result.returncode == 2
    assert option in result.stderr


def test_start_error_includes_stderr(tmp_path: Path) -> None:
    path = tmp_path / "cards.json"
    path.write_text("not json")

    with pytest.raises(SimulatorStartError) as raised:
        SimulatorProcess(data=path)

    assert "exited with code 2" in str(raised.value)
    assert "invalid JSON" in str(raised.value)


def test_default_host_is_loopback() -> None:
    assert build_parser().parse_args([]).host == "127.0.0.1"


# Options at start


def test_fault_options_apply_at_start() -> None:
    fail_next = {"status": 503, "count": 2, "retry_after": "3", "include_login": False}
    faults = {
        "latency_ms": 1.0,
        "latency_jitter_ms": 2.0,
        "rate_limit_per_s": 100.0,
        "rate_limit_burst": 50,
        "retry_after": "date",
        "retry_after_value": "5",
        "token_ttl_s": 60.0,
        "stall_max_s": 10.0,
        "fail_next": fail_next,
    }
    with SimulatorProcess(**faults) as sim:
        current = sim.faults()
        with httpx.Client(base_url=sim.base_url) as client:
            assert login(client).status_code == 200
            statuses = [client.get("/cards").status_code for _ in range(3)]

    for name, value in faults.items():
        assert current[name] == value, name
    assert statuses == [503, 503, 200]


def test_unavailable_and_stall_options_apply_at_start() -> None:
    with SimulatorProcess(unavailable_for_s=30, stall=True) as sim:
        current = sim.faults()
        response = httpx.post(sim.base_url + "/users/actions/login", json=LOGIN_BODY)

    assert current["stall"] is True
    assert 25 < current["unavailable_for_s"] <= 30
    assert response.status_code == 503


def test_custom_credentials() -> None:
    arguments = ["--application-id", "app-7", "--login", "worker", "--password", "s3cret"]
    body = {"user_external_application_id": "app-7", "login": "worker", "password": "s3cret"}
    with SimulatorProcess(extra_args=arguments) as sim, httpx.Client(base_url=sim.base_url) as client:
        assert login(client, LOGIN_BODY).status_code == 403
        response = login(client, body)

    assert response.status_code == 200
    assert response.json()["data"]["user"]["login"] == "worker"


def test_timezone_sets_valid_to_and_card_validity(tmp_path: Path) -> None:
    prague = ZoneInfo("Europe/Prague")
    now_in_prague = datetime.now(prague).replace(tzinfo=None, microsecond=0)
    # Valid from 30 minutes ago in Prague time. Prague is 1 or 2 hours ahead of UTC,
    # so a simulator that judged validity in UTC would see this card as not yet valid.
    starts = (now_in_prague - timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M:%S")
    document = {
        "cards": [{"card_number": "TZ1", "card_type_id": "t1", "state": 1, "valid_from": starts}],
        "card_types": [CARD_TYPE],
    }
    path = tmp_path / "cards.json"
    path.write_text(json.dumps(document))

    with SimulatorProcess(data=path, extra_args=["--timezone", "Europe/Prague"]) as sim:
        with httpx.Client(base_url=sim.base_url) as client:
            valid_to = login(client).json()["data"]["valid_to"]
            valid = client.get("/cards", params={"is_valid": "true"}).json()["data"]["cards"]

    expected_valid_to = now_in_prague + timedelta(hours=7)
    assert abs(datetime.strptime(valid_to, "%Y-%m-%d %H:%M:%S") - expected_valid_to) < timedelta(seconds=5)
    assert [card["card_number"] for card in valid] == ["TZ1"]


def test_listening_line_format() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPOSITORY_ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=PROCESS_TIMEOUT_S)

    assert line.startswith("simulator listening on http://127.0.0.1:")
    assert int(line.rsplit(":", 1)[1]) > 0


# Generated cards


def test_100k_generated_cards() -> None:
    started = time.monotonic()
    with SimulatorProcess(generate_cards=100_000) as sim:
        start_s = time.monotonic() - started
        with httpx.Client(base_url=sim.base_url, timeout=10) as client:
            login(client)
            indexes = random.Random(7).sample(range(100_000), 1000)
            numbers = [generated_card_number(index) for index in indexes]
            by_primary = client.get("/cards", params={"card_number_list[]": numbers, "count": "1000"}).json()["data"]
            secondary = [generated_secondary_card_number(index) for index in indexes[:10]]
            by_secondary = client.get(
                "/cards", params={"card_number_list[]": secondary, "search_secondary_card_number": "true"}
            ).json()["data"]
            past_end = client.get("/cards", params={"card_number_list[]": [generated_card_number(100_000)]}).json()
            large_page = client.get("/cards", params={"count": "5000"}).json()["data"]

    assert start_s < 10
    assert by_primary["total_items"] == 1000
    assert sorted(card["card_number"] for card in by_primary["cards"]) == sorted(numbers)
    assert by_secondary["total_items"] == 10
    assert past_end["data"]["total_items"] == 0
    assert len(large_page["cards"]) == 1000
    assert large_page["total_items"] == 100_030

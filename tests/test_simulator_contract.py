"""Simulator responses checked against the vendor's OpenAPI 3.0 file in tests/contract.

The spec's schemas are validated with JSON Schema Draft 4, the draft that OpenAPI 3.0
schemas extend. Two OpenAPI keywords need conversion: ``nullable: true`` becomes a
``"null"`` type. ``readOnly`` and ``example`` are annotations that validation ignores.
Card, CardType and User also get ``additionalProperties: false`` here, so that a field
the spec does not define fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from simulator.api import CARDS_QUERY_PARAMETERS
from simulator.testing import SimulatorProcess

SPEC_PATH = Path(__file__).parent / "contract" / "carecloud-openapi.yaml"
SPEC_URI = "urn:carecloud-openapi"
STRICT_SCHEMAS = ("Card", "CardType", "User")
LOGIN_BODY = {"user_external_application_id": "simulator-app", "login": "simulator", "password": "simulator"}
LOYALTY_CARD_TYPE_ID = "8bed991c68a470e7aaeffbf048"


def convert_openapi_schema(node: Any) -> Any:
    """Return a copy of an OpenAPI 3.0 schema tree with ``nullable`` turned into JSON Schema types."""
    if isinstance(node, list):
        return [convert_openapi_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: convert_openapi_schema(value) for key, value in node.items()}
    if converted.pop("nullable", False) is True and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    # The C loader parses the 26,000-line file about five times faster than the pure Python one.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = convert_openapi_schema(yaml.load(SPEC_PATH.read_text(encoding="utf-8"), Loader=loader))
    for name in STRICT_SCHEMAS:
        document["components"]["schemas"][name]["additionalProperties"] = False
    return document


@pytest.fixture(scope="module")
def registry(spec: dict[str, Any]) -> Registry:
    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4))


def response_schema_pointer(spec: dict[str, Any], path: str, method: str, status: int) -> str | None:
    """Return a JSON pointer into the spec to a response's body schema, or None if the spec documents no body."""
    escaped_path = path.replace("~", "~0").replace("/", "~1")
    pointer = f"/paths/{escaped_path}/{method}/responses/{status}"
    response = spec["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        pointer = response["$ref"].lstrip("#")
        response = spec["components"]["responses"][pointer.rsplit("/", 1)[1]]
    if "content" not in response:
        return None
    return pointer + "/content/application~1json/schema"


def assert_conforms(spec: dict[str, Any], registry: Registry, path: str, method: str, response: httpx.Response) -> None:
    pointer = response_schema_pointer(spec, path, method, response.status_code)
    assert pointer is not None, f"the spec documents no body for {method.upper()} {path} {response.status_code}"
    assert response.headers["content-type"].startswith("application/json")
    # Referencing the schema inside the registered spec lets its "#/components/..." refs resolve.
    validator = jsonschema.Draft4Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry)
    errors = sorted(validator.iter_errors(response.json()), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{list(error.path)}: {error.message}" for error in errors)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess() as process:
        yield process


@pytest.fixture(autouse=True)
def clean_faults(sim: SimulatorProcess) -> Iterator[None]:
    yield
    sim.reset_faults()


@pytest.fixture(scope="module")
def client(sim: SimulatorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=10) as http:
        token = http.post("/users/actions/login", json=LOGIN_BODY).json()["data"]["bearer_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


# The checker itself


def test_checker_rejects_wrong_card(spec: dict[str, Any], registry: Registry) -> None:
    card_path = "/paths/~1cards/get/responses/200/content/application~1json/schema"
    validator = jsonschema.Draft4Validator({"$ref": f"{SPEC_URI}#{card_path}"}, registry=registry)
    wrong_cards = [
        {"card_number": 1000000000016, "card_type_id": "x", "state": 1},
        {"card_number": "1", "card_type_id": "x", "state": 2},
        {"card_number": "1", "state": 1},
        {"card_number": "1", "card_type_id": "x", "state": 1, "unknown_field": "x"},
    ]

    for card in wrong_cards:
        assert not validator.is_valid({"data": {"cards": [card], "total_items": 1}}), card


def test_nullable_becomes_null_type() -> None:
    schema = convert_openapi_schema({"type": "object", "properties": {"a": {"type": "string", "nullable": True}}})

    assert schema["properties"]["a"] == {"type": ["string", "null"]}


# Response bodies


def test_login_200_conforms(spec: dict, registry: Registry, sim: SimulatorProcess) -> None:
    response = httpx.post(sim.base_url + "/users/actions/login", json=LOGIN_BODY)

    assert response.status_code == 200
    assert_conforms(spec, registry, "/users/actions/login", "post", response)


@pytest.mark.parametrize(
    ("body", "status"),
    [({**LOGIN_BODY, "password": "wrong"}, 403), ({"login": "simulator"}, 400)],
)
def test_login_errors_conform(spec: dict, registry: Registry, sim: SimulatorProcess, body: dict, status: int) -> None:
    response = httpx.post(sim.base_url + "/users/actions/login", json=body)

    assert response.status_code == status
    assert_conforms(spec, registry, "/users/actions/login", "post", response)


def test_login_405_conforms(spec: dict, registry: Registry, sim: SimulatorProcess) -> None:
    response = httpx.get(sim.base_url + "/users/actions/login")

    assert response.status_code == 405
    assert_conforms(spec, registry, "/users/actions/login", "post", response)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"card_number_list[]": ["1000000000016", "0001234567890", "CARD10101", "AbC123xYz", "0000000000017"]},
        {"card_number_list[]": ["AXNFUAIOHFDSNKA"], "search_secondary_card_number": "true"},
        {"state": "0", "sort_field": "card_number", "sort_direction": "DESC", "count": "2", "offset": "1"},
    ],
)
def test_cards_200_conforms(spec: dict, registry: Registry, client: httpx.Client, params: dict) -> None:
    response = client.get("/cards", params=params)

    assert response.status_code == 200
    assert response.json()["data"]["cards"]
    assert_conforms(spec, registry, "/cards", "get", response)


@pytest.mark.parametrize(
    "params",
    [{"count": "0"}, {"state": "7", "offset": "-1"}, {"card_number_list[]": [str(i) for i in range(1001)]}],
)
def test_cards_400_conforms(spec: dict, registry: Registry, client: httpx.Client, params: dict) -> None:
    response = client.get("/cards", params=params)

    assert response.status_code == 400
    assert_conforms(spec, registry, "/cards", "get", response)


def test_cards_401_conforms(spec: dict, registry: Registry, sim: SimulatorProcess) -> None:
    response = httpx.get(sim.base_url + "/cards", headers={"Authorization": "Bearer expired"})

    assert response.status_code == 401
    assert_conforms(spec, registry, "/cards", "get", response)


def test_cards_405_conforms(spec: dict, registry: Registry, client: httpx.Client) -> None:
    response = client.delete("/cards")

    assert response.status_code == 405
    assert_conforms(spec, registry, "/cards", "get", response)


@pytest.mark.parametrize("status", [400, 403, 500])
def test_forced_errors_conform(
    spec: dict, registry: Registry, sim: SimulatorProcess, client: httpx.Client, status: int
) -> None:
    sim.set_faults(fail_next={"status": status, "count": 1})

    response = client.get("/cards")

    assert response.status_code == status
    assert_conforms(spec, registry, "/cards", "get", response)


@pytest.mark.parametrize("status", [429, 503])
def test_statuses_without_documented_body(spec: dict, sim: SimulatorProcess, client: httpx.Client, status: int) -> None:
    sim.set_faults(fail_next={"status": status, "count": 1})

    response = client.get("/cards")

    assert response.status_code == status
    assert response_schema_pointer(spec, "/cards", "get", status) is None


def test_card_types_200_conforms(spec: dict, registry: Registry, client: httpx.Client) -> None:
    response = client.get("/card-types", headers={"Accept-Language": "en"})

    assert response.status_code == 200
    assert_conforms(spec, registry, "/card-types", "get", response)


def test_card_type_200_conforms(spec: dict, registry: Registry, client: httpx.Client) -> None:
    response = client.get(f"/card-types/{LOYALTY_CARD_TYPE_ID}")

    assert response.status_code == 200
    assert_conforms(spec, registry, "/card-types/{card_type_id}", "get", response)


def test_card_type_404_conforms(spec: dict, registry: Registry, client: httpx.Client) -> None:
    response = client.get("/card-types/no-such-type")

    assert response.status_code == 404
    assert_conforms(spec, registry, "/card-types/{card_type_id}", "get", response)


def test_unknown_path_404_conforms(spec: dict, registry: Registry, client: httpx.Client) -> None:
    response = client.get("/no-such-resource")

    assert response.status_code == 404
    # Every path shares components/responses/NotFound, so any path's 404 schema applies.
    assert_conforms(spec, registry, "/cards", "get", response)


# Query parameters


def spec_query_parameters(spec: dict[str, Any], path: str) -> set[str]:
    names = set()
    for parameter in spec["paths"][path]["get"]["parameters"]:
        if "$ref" in parameter:
            parameter = spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        if parameter["in"] == "query":
            names.add(parameter["name"])
    return names


def test_cards_parameters_match_spec(spec: dict) -> None:
    assert set(CARDS_QUERY_PARAMETERS) == spec_query_parameters(spec, "/cards")


def test_each_spec_parameter_is_accepted(spec: dict, client: httpx.Client) -> None:
    valid_values = {
        "count": "5",
        "offset": "0",
        "sort_field": "card_number",
        "sort_direction": "ASC",
        "customer_id": "8ea2591121e636086a4a9c0901",
        "card_number": "1000000000016",
        "card_type_id": LOYALTY_CARD_TYPE_ID,
        "state": "1",
        "is_valid": "true",
        "search_secondary_card_number": "false",
    }
    for name in sorted(spec_query_parameters(spec, "/cards")):
        key = f"{name}[]" if spec["components"]["parameters"].get(name, {}).get("schema", {}).get("type") == "array" else name
        response = client.get("/cards", params={key: valid_values.get(name, "1000000000016")})
        assert response.status_code == 200, f"{key}: {response.text}"


def test_parameter_outside_spec_is_rejected(client: httpx.Client) -> None:
    response = client.get("/cards", params={"card_state": "1"})

    assert response.status_code == 400
    assert response.json()["error"]["error_data"]["invalid_params"][0]["name"] == "card_state"

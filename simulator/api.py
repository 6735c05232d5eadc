"""The simulated CareCloud Enterprise API under `BASE_PATH`.

Each call passes through the same steps: count it, let the fault layer reject or
delay it, resolve the route, check the bearer token, run the endpoint. Routing is a
dict lookup instead of a Starlette Router because benchmarks send thousands of calls
a second and need the route template for the statistics before the endpoint runs.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .data import CardQuery
from .errors import (
    REASON_INVALID_VALUE_FORMAT,
    REASON_NOT_ALLOWED_VALUE,
    REASON_REQUIRED,
    InvalidParam,
    bad_request,
    error_response,
)
from .faults import Rejection
from .params import (
    MAX_LIST_VALUES,
    QueryParams,
    count_list_values,
    parse_accept_language,
    parse_query_string,
)
from .state import Simulator
from .stats import CARDS_ENDPOINT

logger = logging.getLogger(__name__)

BASE_PATH = "/webservice/rest-api/enterprise-interface/v1.0"
LOGIN_PATH = "/users/actions/login"
UNKNOWN_ROUTE = "*"  # the route template recorded in statistics for paths that match no route

# Query parameters of GET /cards, by the names the spec gives them. card_number_list
# is sent as the repeated key card_number_list[].
CARDS_SCALAR_PARAMETERS = (
    "count",
    "offset",
    "sort_field",
    "sort_direction",
    "customer_id",
    "card_number",
    "card_type_id",
    "state",
    "is_valid",
    "search_secondary_card_number",
)
CARDS_LIST_PARAMETERS = ("card_number_list",)
CARDS_QUERY_PARAMETERS = CARDS_SCALAR_PARAMETERS + CARDS_LIST_PARAMETERS
# GET /card-types accepts text_id both as one value and as the repeated key text_id[].
CARD_TYPES_QUERY_PARAMETERS = ("count", "offset", "sort_field", "sort_direction", "name", "text_id")

LOGIN_FIELDS = ("user_external_application_id", "login", "password")

Handler = Callable[[Request, list[tuple[str, str]]], Awaitable[Response]]


class CareCloudApi:
    """ASGI app for the API paths. ``scope["path"]`` still includes `BASE_PATH`."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._routes: dict[str, dict[str, Handler]] = {
            LOGIN_PATH: {"POST": self.login},
            "/cards": {"GET": self.get_cards},
            "/card-types": {"GET": self.get_card_types},
            "/card-types/{card_type_id}": {"GET": self.get_card_type},
        }
        # Fixed user identity, so that repeated logins describe the same user.
        self._user_id = secrets.token_hex(13)
        self._last_login: str | None = None

    def _resolve(self, path: str) -> str:
        """Return the route template that matches ``path`` (relative to the base path), or `UNKNOWN_ROUTE`."""
        if path in self._routes:
            return path
        prefix = "/card-types/"
        if path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix) :]:
            return "/card-types/{card_type_id}"
        return UNKNOWN_ROUTE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived_at = time.time()
        stats = self.simulator.stats
        method = scope["method"]
        template = self._resolve(scope["path"][len(BASE_PATH) :])
        endpoint = f"{method} {template}"
        query = parse_query_string(scope["query_string"])
        card_numbers = count_list_values(query, "card_number_list") if endpoint == CARDS_ENDPOINT else 0

        stats.call_started()
        status = 500
        try:
            response = await self._respond(Request(scope, receive), method, template, query)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            stats.call_finished(arrived_at, endpoint, status, card_numbers)

    async def _respond(self, request: Request, method: str, template: str, query: list[tuple[str, str]]) -> Response:
        # Rejections are decided at arrival, as a gateway in front of the API would.
        # Only calls that pass them wait for a stall, and every call gets the latency.
        faults = self.simulator.faults
        rejection = faults.check(is_login=template == LOGIN_PATH)
        if rejection is None:
            rejection = await faults.wait_for_stall()
        await faults.wait_latency()
        if rejection is not None:
            return _rejection_response(rejection)

        handlers = self._routes.get(template)
        if handlers is None:
            path = request.scope["path"]
            return error_response(
                404,
                f"No resource at {path}.",
                error_data={"resource_name": path[len(BASE_PATH) :].lstrip("/"), "resource_id": ""},
            )
        handler = handlers.get(method)
        if handler is None:
            allowed = ", ".join(handlers)
            return error_response(
                405,
                f"Method {method} is not allowed here. Allowed: {allowed}.",
                error_data={"http_method": method},
                headers={"allow": allowed},
            )

        if template != LOGIN_PATH:
            unauthorized = self._check_token(request)
            if unauthorized is not None:
                return unauthorized

        try:
            return await handler(request, query)
        except Exception:
            logger.exception("endpoint %s %s failed", method, template)
            return error_response(500, "The simulator failed to handle the request. Its log has the traceback.")

    def _check_token(self, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        if header is None:
            return error_response(401, "The Authorization header is missing. Send 'Authorization: Bearer <token>'.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error_response(401, "The Authorization header must have the form 'Bearer <token>'.")
        if not self.simulator.tokens.is_valid(token.strip()):
            return error_response(401, "The bearer token is invalid or expired. Log in again.")
        return None

    # Endpoints

    async def login(self, request: Request, query: list[tuple[str, str]]) -> Response:
        simulator = self.simulator
        try:
            body = json.loads(await request.body())
        except ValueError:
            return bad_request([InvalidParam("body", REASON_INVALID_VALUE_FORMAT, "", "The body must be a JSON object.")])
        if not isinstance(body, dict):
            return bad_request([InvalidParam("body", REASON_INVALID_VALUE_FORMAT, "", "The body must be a JSON object.")])

        missing = [field for field in LOGIN_FIELDS if not isinstance(body.get(field), str) or not body[field]]
        if missing:
            return bad_request([InvalidParam(field, REASON_REQUIRED, "", f"{field} is required.") for field in missing])

        # The spec lists no 401 for this endpoint. Its 403 means "the client does not
        # exist", so wrong credentials get 403 here.
        if not simulator.credentials.match(body["user_external_application_id"], body["login"], body["password"]):
            return error_response(
                403,
                "Invalid user_external_application_id, login or password.",
                error_data={"invalid_resource_name": "users", "interface": "Enterprise"},
            )

        token, expiry = simulator.tokens.issue(simulator.faults.token_ttl_s)
        now_text = simulator.format_local(simulator.clock())
        user = {
            "user_id": self._user_id,
            "login": simulator.credentials.login,
            "first_name": "Simulator",
            "last_name": "User",
            "email": "simulator@example.com",
            "phone": "420000000000",
            "user_role_ids": ["8a0b1c2d3e4f5a6b7c8d9e0f1a"],
            "store_id": "86e05affc7a7abecd513ab4001",
            "last_login": self._last_login or now_text,
        }
        self._last_login = now_text
        simulator.stats.login_succeeded()
        data = {"bearer_token": token, "valid_to": simulator.format_local(expiry), "user": user}
        return _json_response({"data": data})

    async def get_cards(self, request: Request, query: list[tuple[str, str]]) -> Response:
        store = self.simulator.store
        params = QueryParams(
            query,
            scalar_names=CARDS_SCALAR_PARAMETERS,
            list_names=CARDS_LIST_PARAMETERS,
            bracket_only_list_names=CARDS_LIST_PARAMETERS,
        )
        count, offset = params.paging()
        sort_field, descending = params.sorting(store.card_sort_fields)
        state = params.choice("state", ("0", "1"))
        card_query = CardQuery(
            card_number=params.string("card_number"),
            card_numbers=params.lists.get("card_number_list"),
            search_secondary=params.boolean("search_secondary_card_number") or False,
            customer_id=params.string("customer_id"),
            card_type_id=params.string("card_type_id"),
            state=None if state is None else int(state),
            is_valid=params.boolean("is_valid"),
            sort_field=sort_field,
            descending=descending,
        )
        if card_query.card_numbers is not None and len(card_query.card_numbers) > MAX_LIST_VALUES:
            params.errors.append(
                InvalidParam(
                    "card_number_list",
                    REASON_NOT_ALLOWED_VALUE,
                    "",
                    f"card_number_list accepts at most {MAX_LIST_VALUES} values, got {len(card_query.card_numbers)}.",
                )
            )
        if params.errors:
            return bad_request(params.errors)

        matches = store.find_cards(card_query, self.simulator.local_now())
        page = matches[offset : offset + count]
        body = '{"data":{"cards":[' + ",".join(card.json for card in page) + '],"total_items":' + str(len(matches)) + "}}"
        headers = {}
        max_age = int(self.simulator.faults.cache_max_age_s)
        if max_age > 0:
            headers["cache-control"] = f"private, max-age={max_age}"
        return Response(body, media_type="application/json", headers=headers)

    async def get_card_types(self, request: Request, query: list[tuple[str, str]]) -> Response:
        store = self.simulator.store
        params = QueryParams(query, scalar_names=CARD_TYPES_QUERY_PARAMETERS, list_names=("text_id",))
        count, offset = params.paging()
        sort_field, descending = params.sorting(store.card_type_sort_fields)
        if params.errors:
            return bad_request(params.errors)

        text_ids = params.lists.get("text_id")
        if "text_id" in params.scalars:
            text_ids = [*(text_ids or []), params.scalars["text_id"]]
        card_types = store.find_card_types(
            name=params.string("name"),
            text_ids=text_ids,
            sort_field=sort_field,
            descending=descending,
            languages=parse_accept_language(request.headers.get("accept-language")),
        )
        page = card_types[offset : offset + count]
        return _json_response({"data": {"card_types": page, "total_items": len(card_types)}})

    async def get_card_type(self, request: Request, query: list[tuple[str, str]]) -> Response:
        params = QueryParams(query, scalar_names=())
        if params.errors:
            return bad_request(params.errors)

        card_type_id = request.scope["path"].rsplit("/", 1)[1]
        record = self.simulator.store.card_types_by_id.get(card_type_id)
        if record is None:
            return error_response(
                404,
                f"Card type {card_type_id} was not found.",
                error_data={"resource_name": "card-types", "resource_id": card_type_id},
            )
        languages = parse_accept_language(request.headers.get("accept-language"))
        return _json_response({"data": record.localized(languages)})


def _json_response(content: Any) -> Response:
    return Response(json.dumps(content, ensure_ascii=False, separators=(",", ":")), media_type="application/json")


def _rejection_response(rejection: Rejection) -> Response:
    if rejection.status == 400:
        return bad_request([InvalidParam("fail_next", REASON_NOT_ALLOWED_VALUE, "", rejection.detail)])
    error_data = None
    if rejection.status == 403:
        error_data = {"invalid_resource_name": "", "interface": "Enterprise"}
    return error_response(rejection.status, rejection.detail, error_data=error_data, headers=rejection.headers)

"""The control API under `CONTROL_PREFIX`: health, statistics, the call log, faults and reset.

Control calls are not API calls: they are never counted, delayed or rejected by faults.
"""

from __future__ import annotations

import json
import math

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FaultSettingsError
from .state import Simulator

CONTROL_PREFIX = "/_simulator"
EXPIRE_TOKENS_FIELD = "expire_tokens"  # a runtime action accepted with the fault settings


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    content: dict[str, object] = {"error": message}
    if field is not None:
        content["field"] = field
    return JSONResponse(content, status)


def control_routes(simulator: Simulator) -> list[Route]:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(request: Request) -> Response:
        return JSONResponse(simulator.stats.as_dict())

    async def calls(request: Request) -> Response:
        raw_since = request.query_params.get("since")
        since = None
        if raw_since is not None:
            try:
                since = float(raw_since)
            except ValueError:
                since = math.nan
            if not math.isfinite(since):
                return _error(400, f"since must be epoch seconds as a number, got {raw_since!r}", "since")
        return JSONResponse({"calls": simulator.stats.calls_since(since)})

    async def get_faults(request: Request) -> Response:
        return JSONResponse(simulator.faults.as_dict())

    async def update_faults(request: Request) -> Response:
        try:
            changes = json.loads(await request.body())
        except ValueError:
            return _error(400, "The body must be a JSON object of fault settings.")
        if not isinstance(changes, dict):
            return _error(400, "The body must be a JSON object of fault settings.")

        expire_tokens = changes.pop(EXPIRE_TOKENS_FIELD, False)
        if not isinstance(expire_tokens, bool):
            return _error(400, f"{EXPIRE_TOKENS_FIELD} must be true or false", EXPIRE_TOKENS_FIELD)
        try:
            simulator.faults.update(changes)
        except FaultSettingsError as exc:
            return _error(400, str(exc), exc.field)
        if expire_tokens:
            simulator.tokens.expire_all()
        return JSONResponse(simulator.faults.as_dict())

    async def reset(request: Request) -> Response:
        simulator.stats.reset()
        return JSONResponse({"status": "reset"})

    return [
        Route(f"{CONTROL_PREFIX}/health", health, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/stats", stats, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/calls", calls, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/faults", get_faults, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/faults", update_faults, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/reset", reset, methods=["POST"]),
    ]

"""Error responses in the shapes of the CareCloud spec.

Every body is ``{"error": {"type", "exception", "title", "detail", "error_data"}}``
(the spec's BasicError plus ``error_data``). 400 bodies follow BadRequestErrorBody:
``error_data.invalid_params[]`` lists each rejected parameter with ``name``,
``reason``, ``value`` and ``message``. The spec documents no body for 429 and 503.
The simulator still sends the BasicError shape, which clients must tolerate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

# Generic reason codes of the spec's BadRequestErrorBody, plus one of the simulator's own.
REASON_REQUIRED = "required"
REASON_NOT_ALLOWED_VALUE = "not_allowed_value"
REASON_INVALID_VALUE_FORMAT = "invalid_value_format"
REASON_UNKNOWN_PARAMETER = "unknown_parameter"

_STATUS_TEXT = {
    400: ("bad_request_exception", "Bad Request"),
    401: ("unauthorized_exception", "Unauthorized"),
    403: ("forbidden_exception", "Forbidden"),
    404: ("not_found_exception", "Not Found"),
    405: ("method_not_allowed_exception", "Method Not Allowed"),
    429: ("too_many_requests_exception", "Too Many Requests"),
    500: ("internal_server_error_exception", "Internal Server Error"),
    502: ("bad_gateway_exception", "Bad Gateway"),
    503: ("service_unavailable_exception", "Service Unavailable"),
    504: ("gateway_timeout_exception", "Gateway Timeout"),
}


@dataclass(frozen=True)
class InvalidParam:
    """One entry of ``error.error_data.invalid_params[]``."""

    name: str
    reason: str
    value: str
    message: str


def error_response(
    status: int,
    detail: str,
    *,
    error_data: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    exception, title = _STATUS_TEXT.get(status, ("error_exception", "Error"))
    body = {
        "error": {
            "type": "about:blank",
            "exception": exception,
            "title": title,
            "detail": detail,
            "error_data": error_data if error_data is not None else {},
        }
    }
    return Response(json.dumps(body, ensure_ascii=False), status, headers=headers, media_type="application/json")


def bad_request(invalid_params: list[InvalidParam]) -> Response:
    names = ", ".join(param.name for param in invalid_params)
    error_data = {
        "invalid_params": [
            {"name": param.name, "reason": param.reason, "value": param.value, "message": param.message}
            for param in invalid_params
        ]
    }
    return error_response(400, f"Invalid parameters: {names}.", error_data=error_data)

"""The ASGI application: the simulated API under its base path, everything else to Starlette."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from .api import BASE_PATH, CareCloudApi
from .control import control_routes
from .state import Simulator


class SimulatorApp:
    """Send HTTP requests under `BASE_PATH` straight to the API and all others to a Starlette app.

    The API skips Starlette's middleware stack, which keeps the per-call overhead low.
    The Starlette app serves the control API and lifespan events, and returns 404 elsewhere.
    """

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.api = CareCloudApi(simulator)
        self.control = Starlette(routes=control_routes(simulator))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(BASE_PATH) and (len(path) == len(BASE_PATH) or path[len(BASE_PATH)] == "/"):
                await self.api(scope, receive, send)
                return
        await self.control(scope, receive, send)


def create_app(simulator: Simulator) -> SimulatorApp:
    return SimulatorApp(simulator)

"""The `/_sim/*` control endpoints: the `Simulator` methods, over HTTP, for out-of-process use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ai.simulator.handler import SimulatorHandler


def handle(handler: SimulatorHandler) -> None:
    state = handler.server.state
    route = (handler.command, handler.route)
    try:
        body = handler.json_body()
        if route == ("POST", "/_sim/script"):
            steps = body.get("steps") if isinstance(body, dict) else None
            if not isinstance(steps, list):
                raise ValueError('expected {"steps": [...]}')
            result: dict[str, Any] = {"pending": state.script(steps)}
        elif route == ("GET", "/_sim/script"):
            result = {"steps": state.pending()}
        elif route == ("DELETE", "/_sim/script"):
            result = {"cleared": state.clear_script()}
        elif route == ("GET", "/_sim/requests"):
            result = {"requests": state.requests(handler.query.get("path"))}
        elif route == ("DELETE", "/_sim/requests"):
            result = {"cleared": state.clear_requests()}
        elif route == ("POST", "/_sim/config"):
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object of settings")
            result = {"config": state.configure(body).as_dict()}
        elif route == ("GET", "/_sim/config"):
            result = {"config": state.config().as_dict()}
        elif route == ("POST", "/_sim/reset"):
            result = {"config": handler.server.reset().as_dict()}
        elif route == ("GET", "/_sim/health"):
            result = {"ok": True}
        else:
            handler.send_json(404, {"error": f"unknown control route {route[0]} {route[1]}"})
            return
    except ValueError as error:
        handler.send_json(400, {"error": str(error)})
        return
    handler.send_json(200, result)

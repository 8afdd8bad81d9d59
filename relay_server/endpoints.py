"""The relay's plain HTTP endpoints beside the websocket: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text).

Answered during the websocket handshake (websockets' ``process_request``), so a load balancer's probe or a scrape
never becomes a connection. Pure of the relay's state: the server passes in what to report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Request, Response


def _ok(body: bytes, content_type: str) -> Response:
    return Response(
        200, "OK", Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))]), body
    )


def endpoint_response(
    request: Request, healthz: Callable[[], dict[str, Any]], metrics: Callable[[], bytes]
) -> Response | None:
    """The response for ``/healthz`` or ``/metrics`` (query strings ignored); None for any other path."""
    path = request.path.split("?", 1)[0]
    if path == "/healthz":
        return _ok(json.dumps(healthz()).encode(), "application/json")
    if path == "/metrics":
        return _ok(metrics(), "text/plain; version=0.0.4")
    return None

"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from hhforecast.serving.state import State

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: State) -> Response:
    """Requests, latency, predictions by version, reloads and reload failures."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

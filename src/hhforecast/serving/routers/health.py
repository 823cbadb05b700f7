"""GET /health (the process is alive) and GET /ready (a model is loaded and answers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hhforecast.serving.production import check_answers
from hhforecast.serving.public import public_failure, public_log_status
from hhforecast.serving.schemas import ReadyStatus
from hhforecast.serving.state import ServingState, State

router = APIRouter(tags=["health"])


def prediction_log_check(state: ServingState) -> dict[str, Any]:
    """ok or degraded (with the reason) when logging, off when the log is switched off; the log
    named by its file's name (or a PostgreSQL server's host, port and database)."""
    if state.prediction_log is None:
        return {
            "status": "off",
            "reason": "the service logs no prediction (monitoring.log_predictions: false)",
        }
    return public_log_status(state.prediction_log.status(), state.settings)


@router.get("/health", summary="The process is alive")
async def health() -> dict[str, str]:
    """Always 200 while the process runs."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyStatus,
    responses={503: {"model": ReadyStatus, "description": "No model answers"}},
    summary="A model is loaded and answers",
)
async def ready(state: State) -> Any:
    """200 when the served model answers reference rows (a failed reload is shown, not fatal)."""
    follower = state.follower
    served = follower.current
    try:
        check_answers(served)
        answers = True
    except Exception:
        answers = False
    failure = public_failure(
        follower.last_failure.to_dict() if follower.failing and follower.last_failure else None,
        state.settings,
    )
    body = {
        "ready": answers,
        "model_version": served.entry.version if answers else None,
        "reload_failing": follower.failing,
        "last_failure": failure,
        # A log that cannot be written degrades monitoring, not forecasts: still ready.
        "checks": {"prediction_log": prediction_log_check(state)},
    }
    return JSONResponse(body, status_code=200 if answers else 503)

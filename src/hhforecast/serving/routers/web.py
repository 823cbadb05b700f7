"""GET / (the forecast page), POST /web/what-if (trying values, never logged), POST /web/plan
(the page's plan upload), GET /api/history.png (realised vs fitted HH) and GET /favicon.ico.
The page's forecast of a week for planning goes to POST /web/predict (predict.py), logged."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import unquote

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from hhforecast.config import DatasetConfig
from hhforecast.errors import DatasetError
from hhforecast.serving.production import ServedModel
from hhforecast.serving.routers.predict import answer_body, confirmed_out_of_range, read_body
from hhforecast.serving.same_origin import check_page_post
from hhforecast.serving.schemas import ErrorBody
from hhforecast.serving.state import State
from hhforecast.serving.validation import InvalidRequest

router = APIRouter(tags=["web page"])

PLAN_CONFIRM = (
    "check these weeks' inputs; to log the plan as it is, post it again with "
    "?confirm_out_of_range=true (the page's Log these forecasts anyway)"
)


@cache
def page_html() -> str:
    """The page, shipped inside the package (no external scripts or fonts: works offline)."""
    return (resources.files("hhforecast") / "serving" / "static" / "index.html").read_text(
        encoding="utf-8"
    )


@router.get("/", response_class=HTMLResponse, summary="The forecast page")
def index() -> HTMLResponse:
    """Five inputs, a Predict button, the forecast with its interval, and the history picture."""
    return HTMLResponse(page_html())


@cache
def favicon_bytes() -> bytes:
    """The page's icon, shipped inside the package."""
    return (resources.files("hhforecast") / "serving" / "static" / "favicon.ico").read_bytes()


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    """The icon browsers ask for on every page."""
    return Response(
        favicon_bytes(), media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"}
    )


@router.post(
    "/web/what-if",
    summary="Forecast values the page is trying out: answered as /api/predict, never logged",
    response_model=None,
    responses={
        400: {"model": ErrorBody, "description": "Not JSON"},
        403: {"model": ErrorBody, "description": "Posted from another site"},
        415: {"model": ErrorBody, "description": "Not application/json"},
        422: {"model": ErrorBody, "description": "A field broke a rule (named in the body)"},
    },
)
async def what_if(request: Request, state: State) -> Response:
    """What HH would these inputs give? Nothing is logged, so `monitor` never scores it. JSON
    from the page's own origin only, as every /web/* post (same_origin.py)."""
    check_page_post(request, "application/json")
    body = await read_body(request, state.settings.serving.max_body_bytes)
    content, _, _ = answer_body(state.follower.current, body, 1)
    return Response(content, media_type="application/json")


@router.post(
    "/web/plan",
    summary="Forecast every week of an uploaded plan (CSV body), logged with source web",
    responses={
        400: {"model": ErrorBody, "description": "The plan cannot be read"},
        403: {"model": ErrorBody, "description": "Posted from another site"},
        413: {"model": ErrorBody, "description": "Plan too large"},
        415: {"model": ErrorBody, "description": "Not text/csv"},
    },
)
async def plan_forecast(request: Request, state: State) -> Any:
    """The body is a plan file (date and the served variant's features, one row per week).

    Every week is logged for monitoring, unless a week's inputs are outside the training range
    and the request does not confirm them (?confirm_out_of_range=true): then nothing is logged
    and the answer says so (`logged`: false) and why (`not_logged`: the weeks, their inputs
    outside the range, how to confirm). Posted as text/csv by the page; refused from
    another origin (same_origin.py)."""
    check_page_post(request, "text/csv")
    limits = state.settings.serving
    body = await read_body(request, limits.max_body_bytes)
    served = state.follower.current
    name = unquote(request.headers.get("x-filename", "plan.csv"))
    result = await run_in_threadpool(
        _forecast_plan, served, body, name, limits.max_batch_rows, state.settings.dataset
    )
    frame = result.frame
    answer = result.to_dict()
    held = None if confirmed_out_of_range(request) else result.out_of_range_weeks()
    answer["logged"] = held is None
    answer["not_logged"] = held.to_dict(PLAN_CONFIRM) if held else None
    if answer["logged"]:
        state.record(
            served,
            frame[result.features].to_numpy(dtype=np.float64),
            frame["HH_pred"].to_numpy(dtype=np.float64),
            frame["HH_lower"].to_numpy(dtype=np.float64),
            frame["HH_upper"].to_numpy(dtype=np.float64),
            weeks=frame["week"].tolist(),
            source="web",
        )
    return answer


def _forecast_plan(
    served: ServedModel, body: bytes, name: str, max_rows: int, reading: DatasetConfig
) -> Any:
    from hhforecast.modeling.forecast import forecast_weeks, read_plan_bytes

    if not body:
        raise InvalidRequest("body", "plan", "the plan file is empty", 400)
    try:
        plan = read_plan_bytes(body, served.model.features, name, reading)
    except DatasetError as exc:  # named by the uploaded file, not the temporary copy
        raise InvalidRequest("body", "plan", f"{name}: {exc.problem}", 400) from None
    if len(plan) > max_rows:
        raise InvalidRequest(
            "body",
            "max_batch_rows",
            f"the plan has {len(plan)} weeks; at most {max_rows} (serving.max_batch_rows)",
            413,
        )
    return forecast_weeks(served.model, plan)


@router.get(
    "/api/history.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "No dataset"}},
    summary="Realised weekly HH and the served model's fitted values",
)
def history_png(state: State) -> Response:
    """The picture drawn when the served version was loaded, or 404 with the reason."""
    served = state.follower.current
    if served.history_png is None:
        return JSONResponse(
            {
                "error": {
                    "field": "history",
                    "rule": "dataset",
                    "message": served.history_problem or "no history picture",
                }
            },
            status_code=404,
        )
    return Response(
        served.history_png,
        media_type="image/png",
        headers={"Cache-Control": "no-cache", "X-Model-Version": served.entry.version},
    )

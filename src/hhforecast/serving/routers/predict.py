"""POST /api/predict: one week or a batch of weeks, answered with the NumPy forward pass."""

from __future__ import annotations

import json
import math

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from hhforecast.serving.production import ServedModel
from hhforecast.serving.same_origin import check_page_post
from hhforecast.serving.schemas import (
    BatchPredictRequest,
    ErrorBody,
    PredictRequest,
    PredictResponse,
)
from hhforecast.serving.state import ServingState
from hhforecast.serving.validation import (
    InvalidRequest,
    ParsedRequest,
    parse_predict_body,
    require_json_body,
)

router = APIRouter(tags=["predictions"])

# Bodies above this size (about 450 weeks) are parsed and answered in a worker thread so the
# event loop keeps serving single-week requests meanwhile; smaller ones cost less than the hop.
THREAD_BODY_BYTES = 50_000

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Predictions and the interval's lower and upper bounds."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` bytes, and with 400
    when the connection is closed before it all arrived (serving/connections.py closes a
    connection that takes too long to send its request)."""
    try:
        return await _read_body(request, limit)
    except ClientDisconnect:
        raise InvalidRequest(
            "body", "complete_body", "the connection closed before the whole body arrived", 400
        ) from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest(
                "Content-Length", "content_length", "Content-Length is not a number", 400
            )
        if int(declared) > limit:
            raise _too_large(limit)
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> InvalidRequest:
    return InvalidRequest(
        "body",
        "max_body_bytes",
        f"the body is larger than {limit} bytes (serving.max_body_bytes): split the batch",
        413,
    )


def _answer_week(served: ServedModel, x: np.ndarray) -> tuple[bytes, Prediction]:
    """One week: the shared NumPy forward pass, then plain Python to write the JSON."""
    model = served.model
    predictions = model.predict(x)
    hh = float(predictions[0])
    if not math.isfinite(hh):
        raise _no_forecast("body")
    lower, upper = model.interval(predictions)
    outside = served.out_of_range_week(x[0])
    content = b"".join(
        (
            b'{"HH":',
            repr(round(hh, 3)).encode(),
            b',"HH_lower":',
            repr(round(float(lower[0]), 3)).encode(),
            b',"HH_upper":',
            repr(round(float(upper[0]), 3)).encode(),
            served.response_tail,
            json.dumps(outside).encode() if outside else b"[]",
            b"}",
        )
    )
    return content, (predictions, lower, upper)


def _answer_batch(served: ServedModel, x: np.ndarray) -> tuple[bytes, Prediction]:
    """Several weeks: vectorised bounds and rounding, one json.dumps for the list."""
    model = served.model
    predictions = model.predict(x)
    finite = np.isfinite(predictions)
    if not finite.all():
        raise _no_forecast(f"rows[{int(np.flatnonzero(~finite)[0])}]")
    lower, upper = model.interval(predictions)
    # Each row written with repr (valid JSON for finite floats) and a per-version tail: about
    # three times faster than json.dumps over a list of dicts for 10,000 rows.
    tails = served.batch_tails(x)
    rows = [
        f'{{"HH":{hh!r},"HH_lower":{lo!r},"HH_upper":{hi!r}{tail}'
        for hh, lo, hi, tail in zip(
            np.round(predictions, 3).tolist(),
            np.round(lower, 3).tolist(),
            np.round(upper, 3).tolist(),
            tails,
            strict=True,
        )
    ]
    return ("[" + ",".join(rows) + "]").encode(), (predictions, lower, upper)


def _no_forecast(field: str) -> InvalidRequest:
    return InvalidRequest(
        field, "finite_forecast", "the model gives no finite forecast for these values; check them"
    )


_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/PredictRequest"},
                        {"$ref": "#/components/schemas/BatchPredictRequest"},
                    ]
                },
                "examples": {
                    "one week": {
                        "value": {
                            "acft": 249,
                            "sum_daily_hours": 2539.5,
                            "Cycles": 1591,
                            "sum_uti_mensal": 11261.3,
                            "age_fleet": 8037205.9,
                        }
                    },
                },
            }
        },
    }
}
DOCUMENTED_SCHEMAS = (PredictRequest, BatchPredictRequest)


@router.post(
    "/api/predict",
    summary="Forecast HH for one week, or a batch {'rows': [...]} (answered with a list)",
    response_model=None,
    responses={
        200: {"model": PredictResponse | list[PredictResponse]},
        400: {"model": ErrorBody, "description": "Not JSON"},
        413: {"model": ErrorBody, "description": "Body or batch too large"},
        415: {"model": ErrorBody, "description": "A Content-Type other than JSON"},
        422: {"model": ErrorBody, "description": "A field broke a rule (named in the body)"},
    },
    openapi_extra=_BODY_SCHEMA,
)
async def predict(request: Request) -> Response:
    """Forecast the man-hours of each week sent.

    The body is read and checked by hand, and the answer is serialised once, to keep the
    per-request cost at a few tens of microseconds beyond FastAPI's own. An optional `date`
    (any day of the week forecast) is kept in the prediction log for `hhforecast monitor`.
    """
    return await _predict(request, "api")


CONFIRM_OUT_OF_RANGE = "confirm_out_of_range"
"""Query parameter (`=true`) by which the page confirms logging out-of-range inputs."""


def confirmed_out_of_range(request: Request) -> bool:
    """Whether the request confirms that a forecast from out-of-range inputs is to be logged."""
    return request.query_params.get(CONFIRM_OUT_OF_RANGE, "").lower() == "true"


async def predict_from_page(request: Request) -> Response:
    """POST /web/predict: the page's forecast of one week for planning, logged with source "web".

    `monitor` scores the latest logged forecast of each week, so only a deliberate one is
    logged: one week with its `date`, and inputs outside the training range only when the
    request confirms them (?confirm_out_of_range=true); otherwise 409 and nothing is logged.
    Trying values is POST /web/what-if, never logged.
    """
    check_page_post(request, "application/json")
    state: ServingState = request.app.state.serving
    body = await read_body(request, state.settings.serving.max_body_bytes)
    served = state.follower.current
    content, parsed, prediction = answer_body(served, body, 1)
    if parsed.batch:
        raise InvalidRequest(
            "rows", "one_week", "the page forecasts one week at a time; upload a plan for several"
        )
    if not parsed.weeks or parsed.weeks[0] is None:
        raise InvalidRequest(
            "date",
            "required",
            "date (any day of the week forecast) is needed to log a forecast for planning: "
            "monitor compares it with that week's realised HH",
        )
    outside = served.out_of_range_week(parsed.x[0])
    if outside and not confirmed_out_of_range(request):
        raise InvalidRequest(
            "out_of_range",
            CONFIRM_OUT_OF_RANGE,
            f"{', '.join(outside)} outside the range version {served.entry.version} was trained "
            "on, so this forecast was not logged: check the values, or confirm to log it anyway",
            409,
        )
    state.record(served, parsed.x, *prediction, weeks=parsed.weeks, source="web")
    return Response(content, media_type="application/json")


async def _predict(request: Request, source: str) -> Response:
    # Here, not in a middleware: PredictLane (serving/app.py) calls this ahead of the stack.
    require_json_body("/api/predict", request.headers.get("content-type"))
    state: ServingState = request.app.state.serving
    limits = state.settings.serving
    body = await read_body(request, limits.max_body_bytes)
    served = state.follower.current  # one model for the whole request, even during a swap
    if len(body) > THREAD_BODY_BYTES:
        content, parsed, prediction = await run_in_threadpool(
            answer_body, served, body, limits.max_batch_rows
        )
    else:
        content, parsed, prediction = answer_body(served, body, limits.max_batch_rows)
    state.record(served, parsed.x, *prediction, weeks=parsed.weeks, source=source)
    return Response(content, media_type="application/json")


def answer_body(
    served: ServedModel, body: bytes, max_rows: int
) -> tuple[bytes, ParsedRequest, Prediction]:
    """Parse a prediction body and answer it: the JSON bytes, the parsed rows, the forecasts."""
    parsed = parse_predict_body(body, served.model.features, max_rows)
    answer = _answer_batch if parsed.batch else _answer_week
    content, prediction = answer(served, parsed.x)
    return content, parsed, prediction

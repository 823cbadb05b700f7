"""GET / (the forecast page) and GET /api/history.png (realised vs fitted HH)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, JSONResponse

from hhforecast.serving.state import State

router = APIRouter(tags=["web page"])


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

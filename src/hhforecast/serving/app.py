"""The FastAPI app: `create_app(settings)` loads production and assembles the routers.

The app is built before any socket exists, so tests use the very object `hhforecast serve` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hhforecast import __version__
from hhforecast.config import Settings, load_settings
from hhforecast.errors import HHForecastError
from hhforecast.serving.metrics import MetricsMiddleware, ServiceMetrics
from hhforecast.serving.production import (
    ProductionFollower,
    ReloadFailure,
    ServedModel,
    load_served_model,
)
from hhforecast.serving.routers import health, metrics, model_info, predict, web
from hhforecast.serving.state import PredictionSink, ServingState
from hhforecast.serving.validation import InvalidRequest
from hhforecast.watch.prediction_rows import PredictionEvent

__all__ = ["APP_FACTORY", "app_from_environment", "create_app", "one_blas_thread"]

APP_FACTORY = "hhforecast.serving.app:app_from_environment"
DOCS_ASSETS = "/docs-assets"
PREDICT_PATH = "/api/predict"

log = logging.getLogger("hhforecast.serving")


def create_app(
    settings: Settings,
    *,
    served: ServedModel | None = None,
    follow_production: bool = True,
    on_prediction: Callable[[PredictionEvent], None] | None = None,
    api_key: str | None = None,
    prediction_log: PredictionSink | None = None,
    make_follower: Callable[..., ProductionFollower] = ProductionFollower,
) -> FastAPI:
    """Build the API around the production version (loaded now unless `served` is given).

    `follow_production` starts the background follower with the app (at startup, stopped at
    shutdown). `on_prediction` receives every answered prediction (a `PredictionEvent`) on the
    request path, so it must be quick (queue work, do not write synchronously). `api_key`
    defaults to the environment variable named by `serving.api_key_env`; when set, POST
    /api/reload requires it in the X-API-Key header. `prediction_log` (a PredictionRecorder)
    receives every answer when `on_prediction` is not given; its state is shown by /ready,
    /api/info and /metrics, and the app closes it (writing what it holds) at shutdown.
    `make_follower` builds the follower (called like `ProductionFollower`) for production
    resolved elsewhere than config.yaml.
    Raises HHForecastError when nothing can be served (for example, nothing trained yet).
    """
    if served is None:
        served = load_served_model(settings)
    service_metrics = ServiceMetrics()

    def on_swap(new: ServedModel) -> None:
        service_metrics.reloads.inc()
        service_metrics.serving(new.entry.version, new.model.variant)

    def on_failure(_: ReloadFailure) -> None:
        service_metrics.reload_failures.inc()

    follower = make_follower(settings, served, on_swap=on_swap, on_failure=on_failure)
    service_metrics.serving(served.entry.version, served.model.variant)
    service_metrics.reload_failing.set_function(lambda: 1.0 if follower.failing else 0.0)
    if api_key is None:
        api_key = os.environ.get(settings.serving.api_key_env) or None
    if prediction_log is not None:
        on_prediction = on_prediction or prediction_log
        prediction_log.observe(service_metrics.prediction_log_progress)
        service_metrics.before_render = prediction_log.report

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # TensorFlow, loaded to read the weights, leaves millions of objects behind; moving
        # them out of the collector's reach keeps full collections (100+ ms pauses that
        # stall every request) rare and short.
        gc.freeze()
        if follow_production:
            follower.start()
        writer = None
        if prediction_log is not None and not prediction_log.background:
            writer = asyncio.create_task(_write_prediction_log(prediction_log))
        try:
            yield
        finally:
            follower.stop()
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            # Here, not after uvicorn returns: on SIGTERM uvicorn re-raises the signal once the
            # server stops, and the process ends before any later code or atexit hook runs.
            if prediction_log is not None:
                prediction_log.close()

    # /docs loads Swagger UI from files shipped in a package, not a CDN: it works on a network
    # without internet. No /redoc: ReDoc always fetches its vendor's logo from outside
    # (see docs/serving.md).
    app = FastAPIOffline(
        title="hhforecast",
        version=__version__,
        description="Forecast weekly unscheduled maintenance man-hours (HH) of an airline fleet. "
        "See docs/serving.md.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        redoc_url=None,
        # Swagger UI would otherwise fetch a validity badge from an outside host.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.serving = ServingState(
        settings, follower, service_metrics, api_key, on_prediction, prediction_log
    )
    for router in (predict.router, model_info.router, health.router, metrics.router, web.router):
        app.include_router(router)
    # /web/predict as a plain Starlette route, matched first: FastAPI's dependency solving
    # costs ~100 µs per request, more than the whole prediction. POST /api/predict does not
    # reach the router at all (PredictLane); its FastAPI route is there for /docs.
    app.router.routes.insert(
        0,
        Route("/web/predict", predict.predict_from_page, methods=["POST"], include_in_schema=False),
    )
    paths = frozenset(str(getattr(route, "path", "")) for route in app.routes)
    app.add_middleware(MetricsMiddleware, metrics=service_metrics, paths=paths)
    app.add_exception_handler(InvalidRequest, _invalid_request)
    app.add_exception_handler(HHForecastError, _user_error)
    # Starlette builds its middleware stack on the first request; the lane goes in front of it.
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: PredictLane(  # type: ignore[method-assign]
        build_stack(), app, service_metrics
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class PredictLane:
    """POST /api/predict straight to its handler, ahead of Starlette's middleware stack.

    The stack (error middleware, body limit, metrics, exception middleware, router) costs more
    per request than the prediction itself; this lane does what it does for this one route:
    the request timed and counted in the metrics, the app's exception handlers answering the
    errors they handle, and any other exception answered 500 and raised to the server.
    """

    def __init__(self, stack: ASGIApp, app: FastAPI, metrics: ServiceMetrics) -> None:
        self.stack = stack
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_PATH or scope["method"] != "POST":
            await self.stack(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        try:
            request = Request(scope, receive, send)
            try:
                response = await predict.predict(request)
            except Exception as exc:
                handler = _handler_for(self.app, exc)
                if handler is None:
                    await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
                    raise
                response = await handler(request, exc)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self.metrics.observe_request(PREDICT_PATH, "POST", status, time.perf_counter() - start)


def _handler_for(app: FastAPI, exc: Exception) -> Any:
    """The app's exception handler for `exc` (by its class, nearest first), or None."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidRequest)
    return JSONResponse(exc.to_body(), status_code=exc.status)


async def _user_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"error": {"field": "request", "rule": type(exc).__name__, "message": str(exc)}},
        status_code=400,
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the prediction body models, which are parsed by hand."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in predict.DOCUMENTED_SCHEMAS:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        app.openapi_schema = schema
    return app.openapi_schema


async def _write_prediction_log(recorder: PredictionSink) -> None:
    """Write the prediction log from the event loop, every `next_delay()` seconds.

    On the loop, not in a thread of its own: building the rows costs a few microseconds per
    answer either way, but a second thread has to take the GIL from the loop and give it back
    at every cycle: hundreds of context switches a second at full load (docs/benchmarks.md).
    """
    while True:
        await asyncio.sleep(recorder.next_delay())
        try:
            recorder.cycle()
        except Exception:  # the log must never stop the service; the rows stay queued
            log.exception("prediction log: write cycle failed")


def one_blas_thread() -> None:
    """Let NumPy's BLAS run one thread in this process, as each serving process should.

    An answer's forward pass is a few products of matrices at most 32 wide: threads gain
    nothing on them. OpenBLAS nevertheless shares a product of a few hundred rows (the
    challenger's forecasts of one write cycle's answers) among its threads, which then spin
    waiting for more work: that nearly doubled the service's CPU per answer with a challenger
    named (docs/benchmarks.md).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def app_from_environment() -> FastAPI:
    """The app for `uvicorn --factory` worker processes: settings from $HHFORECAST_CONFIG."""
    from hhforecast.watch.prediction_log import PredictionRecorder

    one_blas_thread()
    settings = load_settings()
    # Each worker logs its answers for `hhforecast monitor`; SQLite serialises the writers.
    recorder = (
        PredictionRecorder.from_settings(settings, background=False)
        if settings.monitoring.log_predictions
        else None
    )
    app = create_app(settings, prediction_log=recorder)
    entry = app.state.serving.follower.current.entry
    log.info("Model loaded (version: %s) in worker %d", entry.path or entry.version, os.getpid())
    return app

"""What every router shares: the served model's follower, metrics, limits and the logging seam."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import numpy as np
from fastapi import Depends, Request

from hhforecast.config import Settings
from hhforecast.serving.metrics import ServiceMetrics
from hhforecast.serving.production import ProductionFollower, ServedModel
from hhforecast.serving.validation import InvalidRequest
from hhforecast.watch.prediction_rows import PredictionEvent

__all__ = ["PredictionSink", "ServingState", "State", "require_api_key"]

log = logging.getLogger("hhforecast.serving")


class PredictionSink(Protocol):
    """A prediction log the app feeds, reports on (/ready, /api/info, /metrics) and closes."""

    def __call__(self, event: PredictionEvent) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def observe(self, on_progress: Callable[[int, int, int], None]) -> None: ...

    def report(self) -> None: ...

    def close(self) -> None: ...

    @property
    def background(self) -> bool:
        """True when the sink writes from a thread of its own; else the app's event loop calls
        `cycle()` every `next_delay()` seconds."""
        ...

    def next_delay(self) -> float: ...

    def cycle(self) -> None: ...


@dataclass
class ServingState:
    """The app's shared objects, stored on ``app.state.serving``."""

    settings: Settings
    follower: ProductionFollower
    metrics: ServiceMetrics
    api_key: str | None
    on_prediction: Callable[[PredictionEvent], None] | None = None
    prediction_log: PredictionSink | None = None

    def record(
        self,
        served: ServedModel,
        x: np.ndarray,
        predictions: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        weeks: list[str | None] | None = None,
        source: str = "api",
    ) -> None:
        """Count the predictions and pass them to the callback; a failing callback never
        fails the request that was already answered correctly."""
        model = served.model
        self.metrics.count_predictions(model.version, model.variant, len(predictions))
        if self.on_prediction is None:
            return
        event = PredictionEvent(
            time.time(),
            model.version,
            model.variant,
            served.feature_names,
            x,
            predictions,
            lower,
            upper,
            weeks,
            source,
            served.last_trained_week,
            served.challenger,
        )
        try:
            self.on_prediction(event)
        except Exception:
            log.exception("on_prediction callback failed; the prediction was still returned")


def get_state(request: Request) -> ServingState:
    """The app's ServingState."""
    state: ServingState = request.app.state.serving
    return state


State = Annotated[ServingState, Depends(get_state)]


def require_api_key(request: Request, state: State) -> None:
    """When an API key is configured, refuse requests without the matching X-API-Key header."""
    if state.api_key is None:
        return
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), state.api_key.encode()):
        raise InvalidRequest(
            "X-API-Key",
            "api_key",
            f"this endpoint needs the API key (the value of ${state.settings.serving.api_key_env} "
            "on the server) in the X-API-Key header",
            401,
        )

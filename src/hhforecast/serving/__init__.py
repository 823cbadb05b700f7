"""The HTTP service: `create_app(settings)` builds the FastAPI app that `hhforecast serve` runs."""

from hhforecast.serving.app import create_app
from hhforecast.watch.prediction_rows import PredictionEvent

__all__ = ["PredictionEvent", "create_app"]

"""The HTTP service: `create_app(settings)` builds the FastAPI app that `hhforecast serve` runs."""

from hhforecast.serving.app import create_app
from hhforecast.serving.state import PredictionEvent

__all__ = ["PredictionEvent", "create_app"]

"""hhforecast: forecast weekly unscheduled maintenance man-hours (HH), and operate the forecast."""

from hhforecast.errors import HHForecastError

__all__ = ["HHForecastError", "__version__"]

__version__ = "0.1.0"

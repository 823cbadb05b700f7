"""Which prediction log `monitoring.database` names: a SQLite file (a path) or a PostgreSQL
database (a ``postgresql://`` URL)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from hhforecast.config import Settings
from hhforecast.watch.prediction_store import PredictionLogError, PredictionStore
from hhforecast.watch.sqlite_store import BUSY_TIMEOUT_MS, PredictionLog

__all__ = [
    "POSTGRES_SIDE_FILE",
    "is_database_url",
    "open_prediction_log",
    "prediction_log_location",
    "redacted",
]

URL_SCHEMES = ("postgresql://", "postgres://")
POSTGRES_SIDE_FILE = "prediction-log.unwritten.jsonl"
"""The side file of a PostgreSQL log, in the models folder of the process that keeps it."""


def is_database_url(value: str) -> bool:
    """True when `monitoring.database` names a PostgreSQL server rather than a file."""
    return value.strip().lower().startswith(URL_SCHEMES)


def redacted(url: str) -> str:
    """The URL without its password, for messages, /ready and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def prediction_log_location(settings: Settings) -> str:
    """Where `monitoring.database` points (a file's path, or a URL without its password), said
    without opening, creating or connecting to anything."""
    database = settings.monitoring.database
    if is_database_url(database):
        return redacted(database.strip())
    return str(settings.resolve(database))


def open_prediction_log(
    settings: Settings, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> PredictionStore:
    """The log `monitoring.database` names (a path resolved against the config's folder)."""
    database = settings.monitoring.database
    if is_database_url(database):
        try:
            import psycopg  # noqa: F401  (checked here: a clear message, not one per write)
        except ImportError:
            raise PredictionLogError(
                f"monitoring.database is a PostgreSQL URL ({redacted(database)}), but psycopg "
                "is not installed: pip install 'hhforecast[postgres]'"
            ) from None
        from hhforecast.watch.postgres_store import PostgresPredictionLog

        return PostgresPredictionLog(
            database.strip(),
            redacted(database.strip()),
            settings.models_dir / POSTGRES_SIDE_FILE,
            busy_timeout_ms,
        )
    return PredictionLog(settings.resolve(database), busy_timeout_ms)

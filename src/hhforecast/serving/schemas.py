"""The shapes the API documents at /docs: requests, responses and errors, named by role.

The prediction body is checked by `serving.validation` (faster, and stricter about NaN and
types); these models describe the same contract for OpenAPI readers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hhforecast.serving.validation import FEATURE_LIMITS

__all__ = [
    "BatchPredictRequest",
    "ErrorBody",
    "ErrorDetail",
    "ModelInfo",
    "PredictRequest",
    "PredictResponse",
    "ReadyStatus",
    "ReloadResponse",
]


def _feature(example: float, description: str, name: str) -> Any:
    return Field(ge=0, le=FEATURE_LIMITS[name][0], description=description, examples=[example])


class PredictRequest(BaseModel):
    """One week's features, as the original API took them."""

    model_config = ConfigDict(extra="forbid")

    acft: float = _feature(249, "Aircraft-days in service that week (~240–260).", "acft")
    sum_daily_hours: float = _feature(
        2539.5, "Flight hours flown that week (~2,000–2,700).", "sum_daily_hours"
    )
    Cycles: float = _feature(1591, "Flight cycles that week (~1,300–1,700).", "Cycles")
    sum_uti_mensal: float = _feature(
        11261.3, "Flight hours of the week's calendar month (~8,000–12,000).", "sum_uti_mensal"
    )
    age_fleet: float = _feature(
        8037205.9, "Total aircraft hours summed over the week's aircraft-days (~1e7).", "age_fleet"
    )
    date: str | None = Field(
        None,
        description="Optional: a day (YYYY-MM-DD) of the week this forecast is for. The "
        "prediction log keeps it, so `hhforecast monitor` can join it with that week's "
        "realised HH; without it the week of the request is used.",
        examples=["2026-11-30"],
    )


class BatchPredictRequest(BaseModel):
    """Several weeks at once (at most serving.max_batch_rows); the answer is a list."""

    model_config = ConfigDict(extra="forbid")

    rows: list[PredictRequest] = Field(min_length=1)


class PredictResponse(BaseModel):
    """The forecast for one week, with its interval and the version that answered."""

    HH: float = Field(description="Predicted unscheduled man-hours for the week.")
    HH_lower: float = Field(description="Lower bound of the calibrated interval.")
    HH_upper: float = Field(description="Upper bound of the calibrated interval.")
    model_version: str
    variant: str
    out_of_range: list[str] = Field(
        description="Features outside the range seen in training: treat the forecast with care."
    )


class ErrorDetail(BaseModel):
    field: str = Field(description="The field that broke a rule, e.g. 'acft' or 'rows[3].acft'.")
    rule: str = Field(
        description="The rule: required, unknown_field, number, finite, minimum, "
        "maximum, json, object, array, min_rows, max_batch_rows, max_body_bytes, "
        "api_key."
    )
    message: str


class ErrorBody(BaseModel):
    """Every 4xx answer of the API."""

    error: ErrorDetail


class ModelInfo(BaseModel):
    """The served version and what it knows."""

    model_version: str
    variant: str
    features: list[str]
    trained_at: str
    trained_through: str | None = None
    """The last week the served fit learnt (YYYY-MM-DD); forecast horizons count from it."""
    metrics: dict[str, float]
    feature_ranges: dict[str, list[float]]
    interval: dict[str, Any]
    dataset: dict[str, Any]
    """The training dataset: name (no folders), rows, sha256, start, end, simulated_sample, and
    built_from (each raw file's name, rows and sha256; weeks kept and dropped) when built by
    `dataset build`. No server path."""
    loaded_at: str
    display: dict[str, Any] = {}
    """How the web page writes numbers: numbers is display.numbers (intl 1,042.5; br 1.042,5)."""
    production_setting: str
    challenger: dict[str, Any] = {}
    """The challenger named beside production: version (None when none), loaded, problem."""
    history: dict[str, Any]
    limits: dict[str, Any]
    reload: dict[str, Any]
    prediction_log: dict[str, Any]
    """ok / degraded (with the reason) / off; rows written, dropped and queued."""


class ReadyStatus(BaseModel):
    ready: bool
    model_version: str | None
    reload_failing: bool
    last_failure: dict[str, Any] | None
    checks: dict[str, Any]
    """Each check's status: prediction_log is ok, degraded (with the reason) or off."""


class ReloadResponse(BaseModel):
    reloaded: bool
    model_version: str
    previous_version: str
    failure: dict[str, Any] | None

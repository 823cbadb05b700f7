"""The rules a prediction request must pass before any value reaches the model.

Bodies are parsed by hand rather than through a pydantic body model: the rules are few, the
checks are vectorised for batches, and every failure names its field and the rule it broke.
Python's ``json`` accepts ``NaN`` and ``Infinity`` literals; the finite check refuses them by
field name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from hhforecast._json import JSONDepthError, loads
from hhforecast.config import FIVE_FEATURES

__all__ = [
    "FEATURE_LIMITS",
    "InvalidRequest",
    "ParsedRequest",
    "is_json_media",
    "parse_predict_body",
    "require_json_body",
]

# Upper bounds a real week can never exceed, sized for a fleet of 1,000 aircraft flying every
# day (7,000 aircraft-days a week): beyond them a value is a unit or typing mistake, not a week.
FEATURE_LIMITS: dict[str, tuple[float, str]] = {
    "acft": (7_000.0, "aircraft-days in the week (1,000 aircraft × 7 days)"),
    "sum_daily_hours": (168_000.0, "flight hours in the week (7,000 aircraft-days × 24 h)"),
    "Cycles": (200_000.0, "flight cycles in the week"),
    "sum_uti_mensal": (744_000.0, "flight hours in the month (1,000 aircraft × 31 days × 24 h)"),
    "age_fleet": (2.0e9, "aircraft hours summed over the week's aircraft-days"),
}


class InvalidRequest(Exception):
    """A request body broke a rule; `status` is the HTTP status to answer with."""

    def __init__(self, field: str, rule: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule
        self.message = message
        self.status = status

    def to_body(self) -> dict[str, Any]:
        """The JSON error body: which field, which rule, and a sentence saying how to fix it."""
        return {"error": {"field": self.field, "rule": self.rule, "message": self.message}}


JSON_MEDIA = "application/json"


def is_json_media(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON as Flask's `request.is_json` does (the original API's
    clients): application/json or application/*+json, parameters such as charset allowed."""
    if content_type is None:
        return False
    if content_type == JSON_MEDIA:  # what nearly every client sends: no parsing
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_MEDIA or (media.startswith("application/") and media.endswith("+json"))


def require_json_body(path: str, content_type: str | None) -> None:
    """Refuse (415) a body that is not declared JSON: an HTML form on any site can make a
    browser post text/plain, urlencoded or multipart bodies without a CORS preflight, never
    application/json, so this keeps other sites' pages from logging forecasts."""
    if is_json_media(content_type):
        return
    given = (content_type or "").split(";", 1)[0].strip()[:60] or "no Content-Type"
    raise InvalidRequest(
        "Content-Type",
        "media_type",
        f"{path} takes a JSON body: send it with Content-Type: application/json (got {given})",
        415,
    )


@dataclass(frozen=True)
class ParsedRequest:
    """Feature rows ready for the model, and whether the caller sent a batch."""

    x: np.ndarray
    batch: bool
    weeks: list[str | None] | None = None
    """The optional `date` of each row (the week the forecast is for), as YYYY-MM-DD."""


def _loads(body: bytes) -> Any:
    if not body:
        raise InvalidRequest("body", "json", "the body is empty; send a JSON object", 400)
    try:
        # NaN and Infinity literals parse to floats here; the finite check refuses them
        # naming the field they were sent in.
        return loads(body)
    except JSONDepthError as exc:
        raise InvalidRequest(
            "body", "max_depth", f"the body is refused: {exc} (a prediction body needs 2)", 400
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("body", "json", f"the body is not valid JSON ({exc})", 400) from None


DATE_FIELD = "date"


def _split_date(row: Any, where: str) -> tuple[Any, str | None]:
    """The row without its optional `date`, and that date checked and written YYYY-MM-DD."""
    if not isinstance(row, dict) or DATE_FIELD not in row:
        return row, None
    value = row[DATE_FIELD]
    name = f"{where}.{DATE_FIELD}" if where else DATE_FIELD
    try:
        if not isinstance(value, str):
            raise ValueError
        day = date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidRequest(
            name,
            "date",
            f"{name} must be a date YYYY-MM-DD (any day of the week forecast), "
            f"got {json.dumps(value)[:40]}",
        ) from None
    return {k: v for k, v in row.items() if k != DATE_FIELD}, day.isoformat()


def _row_values(
    row: Any, where: str, features: list[str], required: frozenset[str], allowed: frozenset[str]
) -> list[float]:
    if not isinstance(row, dict):
        raise InvalidRequest(where or "body", "object", f"{where or 'body'} must be a JSON object")
    keys = row.keys()
    if keys != required:
        missing = [f for f in features if f not in row]
        if missing:
            name = f"{where}.{missing[0]}" if where else missing[0]
            raise InvalidRequest(name, "required", f"{name} is required ({_units(missing[0])})")
        extra = sorted(str(k) for k in keys if k not in allowed)
        if extra:
            name = f"{where}.{extra[0]}" if where else extra[0]
            raise InvalidRequest(
                name,
                "unknown_field",
                f"{name} is not a feature; send exactly {', '.join(features)}",
            )
    values = []
    for feature in features:
        value = row[feature]
        kind = type(value)
        if kind is not float and kind is not int:  # bool is an int subclass: refuse it too
            name = f"{where}.{feature}" if where else feature
            raise InvalidRequest(
                name, "number", f"{name} must be a number, got {json.dumps(value)[:40]}"
            )
        try:
            values.append(float(value))
        except OverflowError:  # an integer literal with hundreds of digits
            name = f"{where}.{feature}" if where else feature
            raise InvalidRequest(
                name, "maximum", f"{name} must be ≤ {_limit(feature):g} ({_units(feature)})"
            ) from None
    return values


def _limit(feature: str) -> float:
    return FEATURE_LIMITS.get(feature, (math.inf, ""))[0]


def _units(feature: str) -> str:
    limit = FEATURE_LIMITS.get(feature)
    return limit[1] if limit else "a number"


def _violation(name: str, feature: str, value: float, rule: str) -> InvalidRequest:
    if rule == "finite":
        return InvalidRequest(name, rule, f"{name} must be a finite number, got {value}")
    if rule == "minimum":
        return InvalidRequest(name, rule, f"{name} must be ≥ 0 ({_units(feature)}), got {value:g}")
    return InvalidRequest(
        name,
        rule,
        f"{name} must be ≤ {_limit(feature):g} ({_units(feature)}), got {value:g}; check the units",
    )


def _check_row(values: list[float], features: list[str]) -> None:
    # One week: plain Python comparisons cost less than building NumPy masks.
    for feature, value in zip(features, values, strict=True):
        if not math.isfinite(value):
            raise _violation(feature, feature, value, "finite")
        if value < 0:
            raise _violation(feature, feature, value, "minimum")
        if value > _limit(feature):
            raise _violation(feature, feature, value, "maximum")


def _check_rows(x: np.ndarray, features: list[str]) -> None:
    bad_finite = ~np.isfinite(x)
    bad_negative = x < 0
    bad_high = x > np.array([_limit(f) for f in features])
    for mask, rule in ((bad_finite, "finite"), (bad_negative, "minimum"), (bad_high, "maximum")):
        if mask.any():
            i, j = (int(k) for k in np.argwhere(mask)[0])
            raise _violation(f"rows[{i}].{features[j]}", features[j], float(x[i, j]), rule)


def _batch_values(rows: list[Any], features: list[str], required: frozenset[str]) -> Any:
    """The rows as a float array when every row is well formed, else None.

    C-level map/set passes instead of a Python loop per value: a 10,000-row batch is checked
    in a few milliseconds. Any doubt returns None and the slow path names the culprit.
    """
    if not all(type(row) is dict and row.keys() == required for row in rows):
        return None
    values = list(map(itemgetter(*features), rows))
    if len(features) == 1:
        values = [(v,) for v in values]
    if not set(map(type, chain.from_iterable(values))) <= {float, int}:
        return None
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:
        return None


def parse_predict_body(body: bytes, features: list[str], max_rows: int) -> ParsedRequest:
    """Parse one week ``{feature: value}`` or a batch ``{"rows": [...]}`` into a float array.

    The model's features are required; the other known features are accepted and ignored, so
    the original five-feature body also works against a 4-feature variant. An optional `date`
    names the week the forecast is for (kept by the prediction log for monitoring).
    """
    data = _loads(body)
    required = frozenset(features)
    allowed = required | frozenset(FIVE_FEATURES)
    if isinstance(data, dict) and "rows" in data:
        if len(data) != 1:
            extra = sorted(str(k) for k in data if k != "rows")[0]
            raise InvalidRequest(
                extra, "unknown_field", f"{extra} is not allowed beside rows in a batch"
            )
        rows = data["rows"]
        if not isinstance(rows, list):
            raise InvalidRequest("rows", "array", "rows must be a JSON array of week objects")
        if not rows:
            raise InvalidRequest("rows", "min_rows", "rows must hold at least one week")
        if len(rows) > max_rows:
            raise InvalidRequest(
                "rows",
                "max_batch_rows",
                f"rows holds {len(rows)} weeks; at most {max_rows} are accepted per request "
                "(serving.max_batch_rows): split the batch",
                413,
            )
        weeks: list[str | None] | None = None
        x = _batch_values(rows, features, required)
        if x is None:  # dates, or something wrong: walk the rows, naming any offending field
            split = [_split_date(row, f"rows[{i}]") for i, row in enumerate(rows)]
            weeks = [week for _, week in split] if any(w for _, w in split) else None
            x = np.array(
                [
                    _row_values(row, f"rows[{i}]", features, required, allowed)
                    for i, (row, _) in enumerate(split)
                ],
                dtype=np.float64,
            )
        _check_rows(x, features)
        return ParsedRequest(x=x, batch=True, weeks=weeks)
    row, week = _split_date(data, "")
    values = _row_values(row, "", features, required, allowed)
    _check_row(values, features)
    return ParsedRequest(
        x=np.array([values], dtype=np.float64),
        batch=False,
        weeks=[week] if week is not None else None,
    )

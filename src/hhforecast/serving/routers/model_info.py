"""GET /api/info (the served version) and POST /api/reload (load production now)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hhforecast._json import loads
from hhforecast.modeling.artifacts import trained_through
from hhforecast.serving.public import file_name, public_failure, without_folders
from hhforecast.serving.routers.health import prediction_log_check
from hhforecast.serving.schemas import ErrorBody, ModelInfo, ReloadResponse
from hhforecast.serving.state import ServingState, State, require_api_key
from hhforecast.serving.validation import InvalidRequest, is_json_media

router = APIRouter(tags=["model"])

RELOAD_MAX_BODY_BYTES = 1024


async def check_reload_body(request: Request) -> None:
    """Only an empty body or a JSON one: a cross-site HTML form can post text/plain, urlencoded
    or multipart bodies without a preflight, but never application/json."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if (body or media) and not is_json_media(media):
        raise InvalidRequest(
            "Content-Type",
            "media_type",
            "POST /api/reload takes an empty body or JSON (Content-Type: application/json), "
            f"not {media or 'a body without a Content-Type'}",
            415,
        )
    if len(body) > RELOAD_MAX_BODY_BYTES:
        raise InvalidRequest(
            "body", "max_body_bytes", f"the body is larger than {RELOAD_MAX_BODY_BYTES} bytes", 413
        )
    if body:
        try:
            loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(
                "body", "json", f"the body is not valid JSON ({exc})", 400
            ) from None


def model_info(state: ServingState) -> dict[str, Any]:
    """What /api/info shows: the served version, its metrics and ranges, and reload status."""
    served = state.follower.current
    model = served.model
    variant_info = model.metadata.get("variants", {}).get(model.variant, {})
    metrics = variant_info.get("metrics") or served.entry.metrics.get(model.variant, {})
    dataset = model.metadata.get("dataset")
    limits = state.settings.serving
    return {
        "model_version": model.version,
        "variant": model.variant,
        "features": model.features,
        "trained_at": served.entry.trained_at or str(model.metadata.get("trained_at", "")),
        # The last week the served fit learnt: forecast horizons count from it.
        "trained_through": trained_through(model.metadata),
        "metrics": metrics,
        "feature_ranges": {f: list(bounds) for f, bounds in model.feature_ranges.items()},
        "interval": {
            "coverage": model.coverage,
            "halfwidth": model.interval_halfwidth,
            # relative: the half-width is a share of the prediction; absolute: in HH
            "scale": getattr(model, "interval_scale", "absolute"),
        },
        "dataset": dataset_summary(dataset),
        "loaded_at": served.loaded_at,
        # How the page writes numbers: display.numbers, as the CLI's tables do.
        "display": {"numbers": state.settings.display.numbers},
        "production_setting": state.follower.production_setting,
        # The version forecasting beside production (its forecasts logged, never answered).
        "challenger": {
            "version": served.challenger_named,
            "loaded": served.challenger is not None,
            "problem": without_folders(served.challenger_problem, state.settings),
        },
        "history": {
            "available": served.history_png is not None,
            "url": "/api/history.png" if served.history_png is not None else None,
            "reason": without_folders(served.history_problem, state.settings),
        },
        "limits": {
            "max_batch_rows": limits.max_batch_rows,
            "max_body_bytes": limits.max_body_bytes,
        },
        "reload": reload_status(state),
        "prediction_log": prediction_log_check(state),
    }


def reload_status(state: ServingState) -> dict[str, Any]:
    """The follower's status with the files it watches (and an MLflow cache) by name, and the
    last failure's message without the server's folders."""
    status = dict(state.follower.status())
    status["watching"] = [file_name(str(p)) for p in status.get("watching", [])]
    status["last_failure"] = public_failure(status.get("last_failure"), state.settings)
    mlflow = status.get("mlflow")
    if isinstance(mlflow, dict) and mlflow.get("cache"):
        status["mlflow"] = {**mlflow, "cache": file_name(str(mlflow["cache"]))}
    return status


def dataset_summary(recorded: Any) -> dict[str, Any]:
    """The training dataset as /api/info shows it: file names without their folders, counts and
    SHA-256s, never a path on the server (the recorded manifest names every raw file's path)."""
    dataset = recorded if isinstance(recorded, dict) else {"path": recorded}
    label = str(dataset.get("path") or "")
    summary: dict[str, Any] = {
        # "sample:sample_weekly.csv" names the bundled sample, not a file on the server.
        "name": label if label.startswith("sample:") else file_name(label) or None,
        **{
            key: dataset[key]
            for key in ("rows", "sha256", "start", "end", "simulated_sample")
            if key in dataset
        },
    }
    manifest = dataset.get("manifest")
    if isinstance(manifest, dict):
        summary["built_from"] = _built_from(manifest)
    return summary


def _built_from(manifest: dict[str, Any]) -> dict[str, Any]:
    """What `dataset build` read: each raw file's name, rows and SHA-256, and the weeks kept."""
    inputs = manifest.get("inputs")
    logs: dict[str, Any] = {}
    for kind in ("utilization", "events"):
        files = inputs.get(kind) if isinstance(inputs, dict) else None
        logs[kind] = [
            {
                "name": file_name(str(f.get("path", ""))),
                "rows": f.get("rows"),
                "sha256": f.get("sha256"),
            }
            for f in files or []
            if isinstance(f, dict)
        ]
    weeks = manifest.get("weeks")
    weeks = weeks if isinstance(weeks, dict) else {}
    return {
        **logs,
        "weeks_kept": weeks.get("kept"),
        "weeks_dropped": sum(
            len(dropped)
            for key in ("dropped_partial", "dropped_month_not_covered")
            if isinstance(dropped := weeks.get(key), list)
        ),
        "built_at": manifest.get("built_at"),
    }


@router.get("/api/info", response_model=ModelInfo, summary="The served version and reload status")
def info(state: State) -> dict[str, Any]:
    """The version being served, its variant, features, metrics, ranges and reload status."""
    return model_info(state)


@router.post(
    "/api/reload",
    response_model=ReloadResponse,
    dependencies=[Depends(require_api_key)],
    responses={
        401: {"model": ErrorBody, "description": "API key missing or wrong"},
        409: {"model": ReloadResponse, "description": "Load failed; the old version serves"},
        415: {"model": ErrorBody, "description": "A body that is not JSON"},
    },
    summary="Load the production version now",
)
async def reload(request: Request, state: State) -> Any:
    """Re-read config.yaml and registry.json and load production now if anything changed."""
    await check_reload_body(request)
    outcome = await run_in_threadpool(state.follower.check, True)
    body = {
        "reloaded": outcome.swapped,
        "model_version": outcome.version,
        "previous_version": outcome.previous_version,
        "failure": public_failure(
            outcome.failure.to_dict() if outcome.failure else None, state.settings
        ),
    }
    return JSONResponse(body, status_code=409 if outcome.failure else 200)

"""Settings: found once, validated into a typed object, and passed down.

Search order: ``--config FILE``, then ``$HHFORECAST_CONFIG``, then ``config.yaml`` in the current
folder or the nearest folder above it (as git finds ``.git``), then the built-in defaults.
Relative paths in the file are resolved against the file's own folder (the
current folder when no file was found), so commands behave the same from any working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hhforecast._yaml import read_config_yaml
from hhforecast.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "MLFLOW_URI_ENV",
    "DatasetConfig",
    "DriftConfig",
    "EventColumns",
    "MlflowConfig",
    "MlopsConfig",
    "MonitoringConfig",
    "PathsConfig",
    "ReadingLimits",
    "ServingConfig",
    "Settings",
    "TrainingConfig",
    "UtilizationColumns",
    "find_config_file",
    "load_settings",
    "nearest_config_file",
]

CONFIG_ENV = "HHFORECAST_CONFIG"
MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
"""A config file is a few hundred lines; anything far larger is not one."""
MAX_SHOWN_VALUE = 80

FOUR_FEATURES = ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal"]
FIVE_FEATURES = [*FOUR_FEATURES, "age_fleet"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class PathsConfig(_Section):
    dataset: str | None = None
    """Weekly dataset CSV; null means the sample bundled with the package."""
    models_dir: str = "models"


class TrainingConfig(_Section):
    target: str = "HH"
    variants: dict[str, list[str]] = Field(
        default_factory=lambda: {"4features": FOUR_FEATURES, "5features": FIVE_FEATURES}
    )
    split: Literal["time", "random"] = "time"
    test_fraction: float = Field(0.25, gt=0.0, lt=0.9)
    validation_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    epochs: int = Field(300, ge=1, le=100_000)
    batch_size: int = Field(32, ge=1, le=100_000)
    units: int = Field(32, ge=1, le=4096)
    learning_rate: float = Field(0.003, gt=0.0, lt=1.0)
    patience: int = Field(30, ge=1)
    l2: float = Field(1e-3, ge=0.0)
    seed: int = 42
    min_rows: int = Field(30, ge=8)
    interval_coverage: float = Field(0.8, gt=0.0, lt=1.0)
    backtest_folds: int = Field(0, ge=0, le=520)
    """Rolling-origin folds `train` scores the recipe on; 0: as many as cover the test weeks."""
    backtest_horizon: int = Field(13, ge=1, le=520)
    """Weeks scored per backtest fold (13 = a quarter)."""
    interval_folds: int = Field(6, ge=1, le=104)
    """Rolling-origin folds whose out-of-sample errors calibrate the prediction intervals."""
    refit_on_all_weeks: bool = True
    """Serve a fit of the recipe on every labelled week (false: serve the scored fit)."""

    @field_validator("variants")
    @classmethod
    def _variants_not_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value:
            raise ValueError("at least one variant is needed")
        for name, features in value.items():
            if not features:
                raise ValueError(f"variant {name!r} lists no features")
        return value


class MlopsConfig(_Section):
    production_version: str = "latest"
    registry_file: str = "models/registry.json"
    serve_variant: str = "5features"
    min_fair_weeks: int = Field(13, ge=2, le=520)
    """Fewest weeks unseen by both versions on which `--require-better-rmse` will judge them."""
    significance_level: float = Field(0.05, gt=0.0, lt=0.5)
    """One-sided level of the Diebold–Mariano test `--require-significant` demands."""
    allow_pickled_scalers: bool = False
    """Unpickle the joblib scalers of versions trained before scalers were kept as numbers
    (a pickle runs whatever code it names); never done for versions downloaded from MLflow."""


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    reload_poll_seconds: float = Field(2.0, gt=0.0)
    max_batch_rows: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(2_000_000, ge=1024)
    api_key_env: str = "HHFORECAST_API_KEY"
    request_timeout_seconds: float = Field(15.0, gt=0.0)
    """Time a connection has to send a whole request (serving/connections.py)."""
    max_connections: int = Field(1024, ge=1)
    """Connections kept open at most; beyond, the one waiting longest for its request closes."""


class DriftConfig(_Section):
    min_weeks: int = Field(8, ge=2)
    # Measured on simulated fleets (docs/drift.md): 0.001 per test with any one feature
    # drifting keeps false alarms near 1% and still catches single-factor changes.
    ks_pvalue: float = Field(0.001, gt=0.0, lt=1.0)
    mean_pvalue: float = Field(0.001, gt=0.0, lt=1.0)
    wasserstein: float = Field(0.1, gt=0.0)
    psi: float = Field(0.25, gt=0.0)
    share_of_features: float = Field(0.1, gt=0.0, le=1.0)


class MonitoringConfig(_Section):
    log_predictions: bool = True
    """Whether `serve` logs every answered prediction to `database` (for `monitor`)."""
    database: str = "models/predictions.sqlite"
    queue_rows: int = Field(200_000, ge=1)
    """Rows the service holds at most while the log cannot be written; more are dropped."""
    alert_baseline_weeks: int = Field(13, ge=0)
    """The deployment's first realised weeks (counted once, across versions): they start its
    reference; no alert is raised in them."""
    alert_guard_weeks: int = Field(26, ge=0)
    """The weeks just before the one judged stay out of its reference, so that a recent change is
    compared with how the deployment did before it, not absorbed into it."""
    alert_prior_weeks: float = Field(26.0, ge=0.0)
    """How much the forecasts' own intervals weigh in the error spread, in weeks of evidence."""
    alert_centre_prior_weeks: float = Field(26.0, ge=0.0)
    """How much the intervals' own centre (no bias) weighs in the error centre, in weeks."""
    alert_clip: float = Field(3.0, gt=0.0)
    """Standardised errors are clipped to ± this before they are summed (one heavy week)."""
    alert_slack: float = Field(0.75, ge=0.0)
    """CUSUM slack, in standard deviations of the deployment's errors."""
    alert_threshold: float = Field(3.5, gt=0.0)
    """CUSUM threshold: `monitor` alerts in the week the sum passes it (docs/drift.md)."""
    error_factor: float | None = Field(None, gt=0.0)
    """No longer used (the alert rule replaced it); accepted so older config files still load."""


class UtilizationColumns(_Section):
    """Column names of the utilisation log (one row per aircraft-day or per flight)."""

    date: str = "Dep. Date"
    aircraft: str = "A/C"
    hours: str = "Hours"
    cycles: str = "Cycles"
    tah: str = "TAH"


class EventColumns(_Section):
    """Column names of the unscheduled-event log (one row per item)."""

    date: str = "date"
    aircraft: str = "A/C"
    ata: str = "ATA"
    category: str = "category"
    hh: str = "HH"


class ReadingLimits(_Section):
    """Bounds checked on every table before it is parsed (docs/configuration.md)."""

    max_file_bytes: int = Field(200_000_000, ge=1)
    """A CSV's size, or an .xlsx's size and the total of its unpacked parts."""
    max_line_bytes: int = Field(1_000_000, ge=1)
    max_columns: int = Field(1_000, ge=1)
    max_cells: int = Field(5_000_000, ge=1)
    """Rows times columns (an .xlsx: the sheet's extent from A1 to its farthest cell)."""


class DatasetConfig(_Section):
    """How the user's files are written, and how raw logs map to the weekly dataset."""

    dayfirst: bool = False
    """Read non-ISO dates as dd/mm/yyyy (never month-first)."""
    separator: Literal["auto", ",", ";", "tab"] = "auto"
    utilization: UtilizationColumns = Field(default_factory=UtilizationColumns)
    events: EventColumns = Field(default_factory=EventColumns)
    excluded_categories: list[str] = Field(default_factory=lambda: ["PILOT", "CABIN"])
    """Event categories left out of HH (compared ignoring case and spaces)."""
    limits: ReadingLimits = Field(default_factory=ReadingLimits)


class MlflowConfig(_Section):
    tracking_uri: str | None = None
    """null: off (unless $MLFLOW_TRACKING_URI is set); sqlite:///file.db, a folder, or http(s)://."""
    experiment: str = Field("hhforecast", min_length=1)
    registered_models: dict[str, str] = Field(
        default_factory=lambda: {
            "5features": "hhforecast-5features",
            "4features": "hhforecast-4features",
        }
    )
    """Registered model name per variant; a variant not listed is `hhforecast-<variant>`."""
    cache_dir: str = "mlflow-cache"
    """Where `serve --follow-mlflow` keeps the versions it downloaded."""
    timeout_seconds: float = Field(10.0, gt=0.0, le=600.0)
    """Per HTTP request to a tracking server; an unreachable server fails after this."""
    retries: int = Field(1, ge=0, le=10)
    """Retries of a failed HTTP request before MLflow counts as unreachable."""
    download_timeout_seconds: float = Field(300.0, gt=0.0, le=86_400.0)
    """`serve --follow-mlflow`: longest a model version's download may take before it fails."""
    max_download_bytes: int = Field(200_000_000, ge=1024)
    """`serve --follow-mlflow`: most bytes one model version's download may hold."""

    def model_name(self, variant: str) -> str:
        """The registered model that mirrors `variant`."""
        return self.registered_models.get(variant, f"hhforecast-{variant}")


class DisplayConfig(_Section):
    numbers: Literal["intl", "br"] = "intl"
    """How tables show numbers: intl 1,042.5; br 1.042,5 (as a Brazilian Excel reads them)."""


class _ConfigFile(_Section):
    paths: PathsConfig = Field(default_factory=PathsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    mlops: MlopsConfig = Field(default_factory=MlopsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    display: DisplayConfig = Field(default_factory=DisplayConfig)


@dataclass(frozen=True)
class Settings:
    """Validated settings plus where they came from."""

    source: Path | None
    base_dir: Path
    paths: PathsConfig
    training: TrainingConfig
    mlops: MlopsConfig
    serving: ServingConfig
    drift: DriftConfig
    monitoring: MonitoringConfig
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)

    def resolve(self, value: str | Path) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def models_dir(self) -> Path:
        return self.resolve(self.paths.models_dir)

    @property
    def registry_file(self) -> Path:
        return self.resolve(self.mlops.registry_file)

    @property
    def config_file(self) -> Path:
        """Where `promote` writes production_version (created on first promotion if absent)."""
        return self.source if self.source is not None else self.base_dir / "config.yaml"

    @property
    def mlflow_tracking_uri(self) -> str | None:
        """Where MLflow tracking goes, or None when it is off.

        $MLFLOW_TRACKING_URI wins over the file, as it does for every MLflow tool. A relative
        SQLite file or folder is resolved against the config file's folder, like every path here.
        """
        uri = os.environ.get(MLFLOW_URI_ENV) or self.mlflow.tracking_uri
        if not uri:
            return None
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            return "sqlite:///" + self.resolve(uri.removeprefix("sqlite:///")).as_posix()
        if "://" not in uri and not uri.startswith(("file:", "databricks")):
            return self.resolve(uri).as_uri()
        return uri

    def reloaded(self) -> Settings:
        """The same configuration read again (another command may have moved production)."""
        if self.source is not None and self.source.is_file():
            return load_settings(self.source)
        return load_settings(None, cwd=self.base_dir)

    def with_training(self, **changes: Any) -> Settings:
        """A copy with some training values replaced (command-line overrides), re-validated."""
        data = self.training.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        try:
            training = TrainingConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError("command line", _describe(exc, prefix="training")) from None
        return Settings(
            self.source,
            self.base_dir,
            self.paths,
            training,
            self.mlops,
            self.serving,
            self.drift,
            self.monitoring,
            self.dataset,
            self.mlflow,
        )

    def with_dataset(self, **changes: Any) -> Settings:
        """A copy with some `dataset` values replaced (command-line overrides such as
        --dayfirst); None leaves a value as configured."""
        data = self.dataset.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        try:
            dataset = DatasetConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError("command line", _describe(exc, prefix="dataset")) from None
        return replace(self, dataset=dataset)


def find_config_file(explicit: Path | None = None, cwd: Path | None = None) -> Path | None:
    """The config file to use: explicit, then $HHFORECAST_CONFIG, then the nearest config.yaml
    (see `nearest_config_file`), else None."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                explicit,
                "no such file (given with --config)",
                "Check the path, or leave --config out.",
            )
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ConfigError(
                path,
                f"no such file (named by ${CONFIG_ENV})",
                f"Check the path, or unset {CONFIG_ENV}.",
            )
        return path
    return nearest_config_file(cwd or Path.cwd())


def nearest_config_file(start: Path) -> Path | None:
    """``config.yaml`` in `start` or the nearest folder above it that has one.

    The search stops at the filesystem root, and after a folder holding ``.git`` (a project's
    top): a command run in ``data/`` uses the project's settings, never a stranger's file
    further up.
    """
    for folder in _folders_up(start.absolute()):
        candidate = folder / "config.yaml"
        if candidate.is_file():
            return candidate
    return None


def _folders_up(start: Path) -> list[Path]:
    folders = []
    for folder in [start, *start.parents]:
        folders.append(folder)
        if (folder / ".git").exists():
            break
    return folders


def load_settings(explicit: Path | None = None, cwd: Path | None = None) -> Settings:
    """Find, read and validate the configuration; built-in defaults when there is no file."""
    source = find_config_file(explicit, cwd)
    raw: Any = {}
    if source is not None:
        try:
            raw = read_config_yaml(source)
        except yaml.YAMLError as exc:
            raise ConfigError(source, f"not valid YAML ({_first_line(exc)})") from None
        except RecursionError:
            raise ConfigError(source, "not valid YAML (nested too deeply)") from None
        except OSError as exc:
            raise ConfigError(source, f"cannot be read ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                source,
                f"not UTF-8 text (byte {exc.start} cannot be decoded)",
                "Save the file as UTF-8 (most editors offer it under 'Save as').",
            ) from None
        if not isinstance(raw, dict):
            raise ConfigError(source, "the top level must be a mapping of sections")
    try:
        parsed = _ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source or "config", _describe(exc)) from None
    base_dir = (source.parent if source is not None else (cwd or Path.cwd())).resolve()
    return Settings(
        source=source.resolve() if source is not None else None,
        base_dir=base_dir,
        paths=parsed.paths,
        training=parsed.training,
        mlops=parsed.mlops,
        serving=parsed.serving,
        drift=parsed.drift,
        monitoring=parsed.monitoring,
        dataset=parsed.dataset,
        mlflow=parsed.mlflow,
        display=parsed.display,
    )


def shown_value(value: Any) -> str:
    """A user's value for an error message: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 1] + "…"


def _describe(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if prefix:
            key = f"{prefix}.{key}"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {shown_value(key)}")
        else:
            problems.append(
                f"key {shown_value(key)}: {error['msg']} (got {shown_value(error.get('input'))})"
            )
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return "; ".join(problems[:5]) + more


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"

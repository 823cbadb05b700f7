"""Registry entries: what one version's line in ``registry.json`` holds, and the naming rule.

An entry written by the original system (``metrics_5features``, ``metrics_4features`` with
``mae``/``R²`` keys) reads the same as one written by hhforecast. Nothing here touches a file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hhforecast._json import loads
from hhforecast.errors import RegistryError

__all__ = [
    "LATEST",
    "BadEntryError",
    "ModelVersion",
    "Publication",
    "RegistryDocument",
    "check_version_name",
    "entry_problem",
    "registry_fields",
]

LATEST = "latest"
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_VERSION_LENGTH = 64
_ORIGINAL_KEYS = ("version", "trained_at", "path", "dataset")


def check_version_name(name: str) -> str:
    """Return `name` if it is a safe version name, else raise RegistryError saying why."""
    if not VERSION_PATTERN.fullmatch(name) or len(name) > MAX_VERSION_LENGTH:
        raise RegistryError(
            f"{name!r} is not a valid version name: use letters, digits, '.', '_' and '-', "
            f"starting with a letter or digit, at most {MAX_VERSION_LENGTH} characters "
            "(for example 1.0.0 or 20240226)"
        )
    if name.lower() == LATEST:
        raise RegistryError(
            f"{name!r} is reserved: it means the newest version. Choose another version name, "
            "for example 1.0.0 or 20240226"
        )
    return name


def _metric_key(name: str) -> str:
    """Normalise metric names written by hand or by the original ('mae', 'R²', 'r2')."""
    cleaned = name.replace("²", "2").replace(" ", "_")
    canonical = {"mae": "MAE", "rmse": "RMSE", "r2": "R2", "mape": "MAPE", "r2_adj": "R2_adj"}
    return canonical.get(cleaned.lower(), cleaned)


@dataclass(frozen=True)
class ModelVersion:
    """One registry entry: a trained version and the headline metrics of each variant."""

    version: str
    trained_at: str
    path: str
    dataset: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: Any, where: str) -> ModelVersion:
        if not isinstance(entry, dict) or not isinstance(entry.get("version"), str | int | float):
            raise ValueError(f"{where} is not an object with a 'version'")
        metrics: dict[str, dict[str, float]] = {}
        extra: dict[str, Any] = {}
        for key, value in entry.items():
            if key in _ORIGINAL_KEYS:
                continue
            if key.startswith("metrics_") and isinstance(value, dict):
                metrics[key.removeprefix("metrics_")] = {
                    _metric_key(str(k)): float(v)
                    for k, v in value.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
            else:
                extra[key] = value
        return cls(
            version=str(entry["version"]),
            trained_at=str(entry.get("trained_at", "")),
            path=str(entry.get("path", "")),
            dataset=str(entry.get("dataset", "")),
            metrics=metrics,
            extra=extra,
        )

    def to_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "version": self.version,
            "trained_at": self.trained_at,
            "path": self.path,
            "dataset": self.dataset,
        }
        # The original wrote the 5-feature metrics first; keep that order for readers of the file.
        for variant in sorted(self.metrics, reverse=True):
            entry[f"metrics_{variant}"] = self.metrics[variant]
        entry.update(self.extra)
        return entry

    def metric(self, variant: str, name: str) -> float | None:
        return self.metrics.get(variant, {}).get(name)

    def test_window(self) -> str:
        """'65 from 2022-10-03': the held-out weeks this entry's metrics were measured on."""
        period = self.extra.get("test_period")
        if not isinstance(period, dict) or not {"start", "end"} <= set(period):
            return "unknown"
        return f"{period.get('weeks', '?')} from {period['start']}"


class BadEntryError(RegistryError):
    """A registry entry that must not be loaded or promoted (a bad name, a path elsewhere)."""

    def __init__(self, version: str, registry: Path, problem: str) -> None:
        super().__init__(
            f"the entry of version {version!r} in {registry} is not sound: {problem}. It is "
            "never loaded or promoted; `hhforecast registry check` lists such entries"
        )


def entry_problem(entry: ModelVersion, models_dir: Path, base_dir: Path) -> str | None:
    """Why an entry must not be loaded or promoted, or None: its version must be a valid name,
    its `path` (when recorded) models/<version>, and that folder inside the models folder."""
    try:
        check_version_name(entry.version)
    except RegistryError as exc:
        return str(exc)
    expected = models_dir / entry.version
    if entry.path:
        recorded = Path(entry.path).expanduser()
        recorded = recorded if recorded.is_absolute() else base_dir / recorded
        if os.path.normpath(recorded) != os.path.normpath(expected):
            return (
                f"its path {entry.path!r} is not the folder {expected} "
                f"({models_dir.name}/{entry.version} in the models folder)"
            )
    if expected.is_symlink() or expected.exists():
        real = expected.resolve()
        if real != models_dir.resolve() / entry.version:
            return f"its folder {expected} leads elsewhere (to {real})"
    return None


@dataclass(frozen=True)
class Publication:
    """A version just published, and whether it now serves (production follows "latest")."""

    entry: ModelVersion
    serving: bool


@dataclass
class RegistryDocument:
    """The whole of ``registry.json``: the versions, the promotion history, and any other key."""

    versions: list[ModelVersion]
    history: list[dict[str, Any]]
    other: dict[str, Any]
    challenger: str | None = None
    """The version named challenger: forecasts beside production, judged on realised weeks."""

    @classmethod
    def from_json(cls, text: str) -> RegistryDocument:
        """Parse the file's text; ValueError says what is wrong with it."""
        try:
            data = loads(text)  # JSONDepthError (a ValueError) names the nesting limit
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if isinstance(data, list):  # a bare list of entries is accepted as well
            data = {"versions": data}
        if not isinstance(data, dict) or not isinstance(data.get("versions", []), list):
            raise ValueError("expected an object with a 'versions' list")
        try:
            versions = [
                ModelVersion.from_entry(entry, f"versions[{i}]")
                for i, entry in enumerate(data.get("versions", []))
            ]
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        history = data.get("history", [])
        if not isinstance(history, list):
            raise ValueError("'history' must be a list")
        challenger = data.get("challenger")
        if challenger is not None and not isinstance(challenger, str):
            raise ValueError("'challenger' must be a version name or null")
        other = {k: v for k, v in data.items() if k not in ("versions", "history", "challenger")}
        return cls(versions, history, other, challenger)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "versions": [v.to_entry() for v in self.versions],
            "history": self.history,
        }
        if self.challenger is not None:
            data["challenger"] = self.challenger
        data.update(self.other)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def registry_fields(metadata: dict[str, Any]) -> dict[str, Any]:
    """The registry entry's fields (besides version and path) from a version's metadata."""
    fields: dict[str, Any] = {
        "trained_at": metadata["trained_at"],
        "dataset": metadata["dataset"]["path"],
    }
    if metadata["dataset"].get("simulated_sample"):
        # Said in the registry too, so that `registry list` and `show` flag such a version.
        fields["simulated_sample"] = True
    for name, info in metadata["variants"].items():
        fields[f"metrics_{name}"] = info["metrics"]
    fields["dataset_sha256"] = metadata["dataset"]["sha256"]
    fields["split"] = metadata["split"]["mode"]
    fields["test_period"] = metadata["split"]["test"]
    if isinstance(metadata.get("trained_through"), str):
        # The served fit's last week; the metrics above are the recipe's holdout score.
        fields["trained_through"] = metadata["trained_through"]
    fields["baselines"] = {
        name: {b: {"RMSE": m["RMSE"], "MAE": m["MAE"]} for b, m in info["baselines"].items()}
        for name, info in metadata["variants"].items()
    }
    if isinstance(metadata.get("mlflow"), dict) and metadata["mlflow"].get("run_id"):
        fields["mlflow_run_id"] = metadata["mlflow"]["run_id"]
    return fields

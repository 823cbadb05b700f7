"""The model being served, and the follower that swaps it when production moves.

A `ServedModel` is immutable: a request takes the current one once and uses it to the end, so a
swap (one reference assignment) never changes a model under a request in flight. The follower
polls config.yaml and registry.json; when the resolved production version changes it loads the
new one in its own thread, checks it on reference rows, and only then swaps. A version that fails
to load is reported and the old one keeps serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from hhforecast.config import Settings
from hhforecast.errors import ArtifactError, HHForecastError
from hhforecast.modeling.inference import VariantModel
from hhforecast.registry.store import ModelVersion, Registry

__all__ = [
    "HistoryPicture",
    "ProductionFollower",
    "ReloadFailure",
    "ReloadOutcome",
    "ServedModel",
    "load_served_model",
]

log = logging.getLogger("hhforecast.serving")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class HistoryPicture:
    """The training-history picture of a served version, drawn on first use: drawing it needs
    matplotlib and the training dataset, a second or more that start-up need not wait for."""

    def __init__(self, settings: Settings | None, model: VariantModel) -> None:
        self._settings = settings
        self._model = model
        self._lock = threading.Lock()
        self._drawn: tuple[bytes | None, str | None] | None = None

    def get(self) -> tuple[bytes | None, str | None]:
        """(PNG bytes, None) or (None, why there is no picture)."""
        with self._lock:
            if self._drawn is None:
                self._drawn = self._draw()
            return self._drawn

    def _draw(self) -> tuple[bytes | None, str | None]:
        if self._settings is None:
            return None, "no history picture"
        from hhforecast.serving.history import render_history_png

        try:
            return render_history_png(self._settings, self._model), None
        except HHForecastError as exc:
            return None, str(exc)
        except Exception as exc:  # the picture is a convenience: never fail a request over it
            return None, f"the history picture could not be drawn ({type(exc).__name__})"


@dataclass(frozen=True)
class ServedModel:
    """A loaded, checked production version with what the API shows about it."""

    model: VariantModel
    entry: ModelVersion
    loaded_at: str
    history: HistoryPicture
    challenger: VariantModel | None = None
    """The challenger, loaded and checked beside production: every logged answer is computed
    by it too (in the log's write cycle, not on the request path). None when there is none."""
    challenger_problem: str | None = None
    """Why the named challenger is not loaded (production serves regardless)."""
    challenger_named: str | None = None
    """The challenger registry.json named when this was loaded (loaded or not)."""

    @property
    def history_png(self) -> bytes | None:
        """The training-history picture (drawn on first use), or None."""
        return self.history.get()[0]

    @property
    def history_problem(self) -> str | None:
        """Why there is no history picture, or None."""
        return self.history.get()[1]

    @property
    def identity(self) -> tuple[str, str, str, str | None]:
        """What makes two loads the same: version, its training time, the variant, and the
        challenger beside it."""
        return (
            self.entry.version,
            self.entry.trained_at,
            self.model.variant,
            self.challenger_named,
        )

    def out_of_range_codes(self, x: np.ndarray) -> list[int]:
        """Per row, a bit mask of the features outside the training range."""
        outside = (x < self.model.range_lows) | (x > self.model.range_highs)
        return (outside @ (1 << np.arange(len(self.model.features)))).tolist()

    def out_of_range_names(self, code: int) -> list[str]:
        """The feature names of a bit mask from `out_of_range_codes`."""
        return [name for j, name in enumerate(self.model.features) if code >> j & 1]

    def batch_tails(self, x: np.ndarray) -> list[str]:
        """Per row, the end of its JSON answer: version, variant and out-of-range names."""
        tail = self.response_tail.decode()
        cache: dict[int, str] = {}
        out = []
        for code in self.out_of_range_codes(x):
            text = cache.get(code)
            if text is None:
                text = cache[code] = tail + json.dumps(self.out_of_range_names(code)) + "}"
            out.append(text)
        return out

    @cached_property
    def response_tail(self) -> bytes:
        """The constant part of a one-week answer, written once per loaded version."""
        version = json.dumps(self.model.version)
        variant = json.dumps(self.model.variant)
        return f',"model_version":{version},"variant":{variant},"out_of_range":'.encode()

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        """The features as a tuple: an event holding only tuples, strings, numbers and arrays
        is dropped from the garbage collector's watch, so queued log events cost no collections.
        """
        return tuple(self.model.features)

    @cached_property
    def last_trained_week(self) -> str | None:
        """The last week the served fit learnt: forecast horizons are counted from it."""
        from datetime import date, timedelta

        from hhforecast.modeling.artifacts import trained_through

        end = trained_through(self.model.metadata)
        if not end:
            return None
        day = date.fromisoformat(end)
        return (day - timedelta(days=day.weekday())).isoformat()

    @cached_property
    def _bounds(self) -> list[tuple[str, float, float]]:
        model = self.model
        lows, highs = model.range_lows.tolist(), model.range_highs.tolist()
        return list(zip(model.features, lows, highs, strict=True))

    def out_of_range_week(self, row: np.ndarray) -> list[str]:
        """The features of one row outside the training range (plain Python: one row)."""
        return [
            name
            for (name, lo, hi), v in zip(self._bounds, row.tolist(), strict=True)
            if v < lo or v > hi
        ]


def check_answers(served: ServedModel) -> None:
    """Raise ArtifactError unless the model gives finite predictions on reference rows."""
    with np.errstate(all="ignore"):  # a broken model is reported below, not warned about
        predictions = served.model.predict(served.model.reference_rows())
    if predictions.shape != (3,) or not np.isfinite(predictions).all():
        raise ArtifactError(
            f"version {served.entry.version} ({served.model.variant}) gives non-finite "
            f"predictions on reference rows ({predictions.tolist()}); it is not served"
        )


def load_served_model(
    settings: Settings, entry: ModelVersion | None = None, challenger: str | None = None
) -> ServedModel:
    """Load and check `entry` (default: the production version) and the `challenger` named
    (default: the one registry.json names); its history picture is drawn when first asked for.

    A challenger that cannot be loaded never stops production: it is left out and said why."""
    from hhforecast.modeling.predict import load_registered

    registry = Registry(settings)
    if entry is None:
        entry = registry.require_production_version()
    if challenger is None:
        challenger = registry.read_document().challenger
    model = load_registered(registry, entry, settings.mlops.serve_variant)
    served = ServedModel(model, entry, _now(), HistoryPicture(settings, model))
    check_answers(served)
    if challenger is None or challenger == entry.version:
        return served
    served = replace(served, challenger_named=challenger)
    try:
        other = load_registered(registry, registry.get(challenger), settings.mlops.serve_variant)
        check_answers(
            ServedModel(other, registry.get(challenger), served.loaded_at, served.history)
        )
        if sorted(other.features) != sorted(model.features):
            raise ArtifactError(
                f"challenger {challenger} takes the features {other.features}, production "
                f"{entry.version} takes {model.features}: it cannot forecast the same requests"
            )
    except HHForecastError as exc:
        log.warning("challenger %s not loaded, production serves alone: %s", challenger, exc)
        return replace(served, challenger_problem=f"challenger {challenger} not loaded: {exc}")
    return replace(served, challenger=other)


@dataclass(frozen=True)
class ReloadFailure:
    """Why the configured production version is not the one being served."""

    at: str
    version: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "version": self.version, "message": self.message}


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload attempt did."""

    swapped: bool
    version: str
    previous_version: str
    failure: ReloadFailure | None


def _folder_stamp(folder: Path) -> str:
    """Name, size and change time of every file of a version folder: replacing one in place
    (a forced re-train) changes it, without reading any file."""
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file())
        return "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    except OSError as exc:
        return f"error {exc.errno}"


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(path.read_bytes())
        except FileNotFoundError:
            digest.update(b"\0missing")
        except OSError as exc:
            digest.update(f"\0error {exc.errno}".encode())
        digest.update(b"\0\0")
    return digest.hexdigest()


class ProductionFollower:
    """Holds the served model and swaps it when config.yaml or registry.json move production."""

    def __init__(
        self,
        settings: Settings,
        served: ServedModel,
        loader: Callable[[Settings, ModelVersion], ServedModel] | None = None,
        on_swap: Callable[[ServedModel], None] | None = None,
        on_failure: Callable[[ReloadFailure], None] | None = None,
    ) -> None:
        self.settings = settings
        self.poll_seconds = settings.serving.reload_poll_seconds
        self._served = served
        self._loader = loader or self._load_with_challenger
        self.challenger: str | None = served.challenger_named
        self._on_swap = on_swap
        self._on_failure = on_failure
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fingerprint = _fingerprint(self._watched_files())
        # What the served model was loaded from, and what the last failed load tried: a forced
        # reload with both unchanged returns at once instead of loading the same files again.
        self._loaded_stamp = self._stamp(settings, served.entry)
        self._failed_stamp: str | None = None
        self.production_setting = settings.mlops.production_version
        self.last_reload_at: str | None = None
        self.last_check_at: str | None = None
        self.last_failure: ReloadFailure | None = None
        self.failing = False
        self.reloads = 0
        self.failures = 0

    @property
    def current(self) -> ServedModel:
        """The model to answer with; read once per request."""
        return self._served

    def _load_with_challenger(self, settings: Settings, entry: ModelVersion) -> ServedModel:
        return load_served_model(settings, entry, self.challenger)

    def production(self) -> tuple[Settings, ModelVersion]:
        """The settings read again and the production version they name (config.yaml and
        registry.json here; another source of production overrides this). The challenger
        registry.json names is noted on the way (`self.challenger`)."""
        settings = self.settings.reloaded()
        self.production_setting = settings.mlops.production_version
        registry = Registry(settings)
        snapshot = registry.snapshot()
        entry = snapshot.production()
        if entry is None:
            entry = registry.require_production_version()  # raises, saying to train one
        self.challenger = snapshot.challenger
        return settings, entry

    def _watched_files(self) -> list[Path]:
        return [self.settings.config_file, self.settings.registry_file]

    def _stamp(self, settings: Settings, entry: ModelVersion) -> str:
        folder = Registry(settings).version_dir(entry)
        variant = settings.mlops.serve_variant
        stamp = f"{self._fingerprint}|{entry.version}|{variant}|{_folder_stamp(folder)}"
        return stamp + (f"|{self.challenger}" if self.challenger else "")

    def check(self, force: bool = False) -> ReloadOutcome:
        """Re-read the config and registry; load and swap if production moved.

        `force` also reloads the same version when its files changed since it was loaded; with
        nothing changed it returns at once (and a load that failed is not retried until
        something changes), so repeated calls cost a few file reads, not a model load.
        """
        with self._reload_lock:
            previous = self._served
            self.last_check_at = _now()
            self._fingerprint = _fingerprint(self._watched_files())
            wanted: str | None = None
            try:
                settings, entry = self.production()
                wanted = entry.version
                identity = (
                    entry.version,
                    entry.trained_at,
                    settings.mlops.serve_variant,
                    self.challenger if self.challenger != entry.version else None,
                )
                stamp = self._stamp(settings, entry)
                unchanged = identity == previous.identity
                if unchanged and (not force or stamp == self._loaded_stamp):
                    self._clear_failure()
                    return ReloadOutcome(
                        False, previous.entry.version, previous.entry.version, None
                    )
                if stamp == self._failed_stamp and self.last_failure is not None:
                    return ReloadOutcome(
                        False, previous.entry.version, previous.entry.version, self.last_failure
                    )
                self._failed_stamp = stamp
                served = self._loader(settings, entry)
            except Exception as exc:  # any failure keeps the old model serving
                message = (
                    str(exc)
                    if isinstance(exc, HHForecastError)
                    else (f"{type(exc).__name__}: {exc}")
                )
                failure = ReloadFailure(_now(), wanted, message)
                self.last_failure = failure
                self.failing = True
                self.failures += 1
                log.warning(
                    "production reload failed, still serving %s: %s",
                    previous.entry.version,
                    message,
                )
                if self._on_failure is not None:
                    self._on_failure(failure)
                return ReloadOutcome(False, previous.entry.version, previous.entry.version, failure)
            self._served = served
            self._loaded_stamp = stamp
            self._failed_stamp = None
            self.last_reload_at = served.loaded_at
            self.reloads += 1
            self._clear_failure()
            log.info(
                "now serving version %s (was %s)", served.entry.version, previous.entry.version
            )
            if self._on_swap is not None:
                self._on_swap(served)
            return ReloadOutcome(True, served.entry.version, previous.entry.version, None)

    def _clear_failure(self) -> None:
        # The last failure stays on record for /api/info; `failing` says whether it still holds.
        self.failing = False

    def poll_once(self) -> ReloadOutcome | None:
        """Check for production changes if either watched file changed since the last look."""
        if _fingerprint(self._watched_files()) == self._fingerprint:
            return None
        return self.check()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # the follower must outlive any surprise; it is logged
                log.exception("production follower: unexpected error")

    def start(self) -> None:
        """Start polling in a daemon thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="hhforecast-production-follower", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and wait for an ongoing load to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def status(self) -> dict[str, Any]:
        """The reload status shown by /api/info and /ready."""
        return {
            "poll_seconds": self.poll_seconds,
            "watching": [str(p) for p in self._watched_files()],
            "last_check_at": self.last_check_at,
            "last_reload_at": self.last_reload_at,
            "reloads": self.reloads,
            "failures": self.failures,
            "failing": self.failing,
            "last_failure": self.last_failure.to_dict() if self.last_failure else None,
        }

"""Which weeks a version is judged on, and which of them a model has already seen.

By default a version is scored on its own held-out test weeks, re-read from the dataset it was
trained on (checked by SHA-256); else on labelled weeks the caller names: a file (``--data``) or
weeks already in memory (the fair weeks `retrain` picks). A week a model trained on is no fair
ground for it: `training_dates` and `overlap` say which evaluation weeks those are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hhforecast.config import DatasetConfig, Settings
from hhforecast.datasets.weekly import DATE_COLUMN
from hhforecast.errors import EXIT_BAD_INPUT, HHForecastError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EvaluationDataError",
    "EvaluationFrame",
    "EvaluationWeeks",
    "FairWeeks",
    "LabelledWeeks",
    "Overlap",
    "disagreeing_weeks",
    "evaluation_frame",
    "fair_weeks",
    "overlap",
    "training_dates",
    "training_end",
]


class EvaluationDataError(HHForecastError):
    """The weeks to evaluate on cannot be found or trusted; the user must name them."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class LabelledWeeks:
    """Labelled weeks to evaluate on, already read: date, features and target, by date."""

    frame: pd.DataFrame
    source: str
    """What these weeks are, for reports ("labelled weeks of recent.csv")."""
    dataset: str
    """The file they came from."""

    @classmethod
    def read(
        cls,
        path: Path,
        columns: list[str],
        target: str,
        reading: DatasetConfig | None = None,
    ) -> LabelledWeeks:
        """Read and check a CSV of labelled weeks (`reading`: how the user's files are written)."""
        from hhforecast.datasets.weekly import load_weekly_dataset

        frame = load_weekly_dataset(path, columns, target, reading=reading).frame
        return cls(frame, f"labelled weeks of {path}", str(path))

    def with_columns(self, columns: list[str], target: str) -> LabelledWeeks:
        """The same weeks reduced to `columns` and the target, checked to be there."""
        from hhforecast.datasets.weekly import check_feature_frame

        wanted = list(dict.fromkeys([*columns, target]))
        values = check_feature_frame(self.frame.reset_index(drop=True), self.source, wanted)
        frame = values.assign(**{DATE_COLUMN: self.frame[DATE_COLUMN].to_numpy()})
        return LabelledWeeks(frame[[DATE_COLUMN, *wanted]], self.source, self.dataset)


@dataclass(frozen=True)
class EvaluationWeeks:
    """Which weeks every model was scored on."""

    source: str
    dataset: str
    start: str
    end: str
    weeks: int


@dataclass(frozen=True)
class Overlap:
    """Evaluation weeks a model was trained on: scores there are not fair ground."""

    model: str
    weeks: int
    first: str | None
    last: str | None
    method: str


@dataclass
class EvaluationFrame:
    """The weeks to score: features and target, which rows are evaluated, which are training."""

    frame: Any
    test: np.ndarray
    train: np.ndarray
    weeks: EvaluationWeeks


def _trusted_dataset(settings: Settings, metadata: dict[str, Any]) -> tuple[Path | None, str]:
    """The path of a version's training dataset if it is still there unchanged, else why not."""
    from hhforecast.datasets.weekly import recorded_dataset

    recorded = recorded_dataset(metadata, settings.base_dir)
    why = {
        "unrecorded": "its metadata names no dataset",
        "missing": f"its dataset {recorded.label} is gone ({recorded.path})",
        "changed": f"its dataset {recorded.label} has changed since training (SHA-256 differs)",
    }
    if recorded.problem is not None:
        return None, why[recorded.problem]
    return recorded.path, recorded.label


def _period_mask(dates: Any, period: dict[str, Any]) -> np.ndarray:
    import pandas as pd

    start, end = pd.Timestamp(period["start"]), pd.Timestamp(period["end"])
    return np.asarray((dates >= start) & (dates <= end))


def _has_split(metadata: dict[str, Any]) -> bool:
    split = metadata.get("split")
    return isinstance(split, dict) and all(
        isinstance(split.get(k), dict) for k in ("fit", "validation", "test")
    )


def _split_rows(metadata: dict[str, Any], dates: Any) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, test rows) of a version's own dataset, as its training split them."""
    from hhforecast.modeling.evaluation import split_weeks

    if not _has_split(metadata):
        raise EvaluationDataError(
            f"the metadata of version {metadata.get('version')} does not record its train/test "
            "split; pass --data FILE with the weeks to evaluate on"
        )
    split = metadata["split"]
    if split.get("mode", "time") == "time":
        train = _period_mask(dates, split["fit"]) | _period_mask(dates, split["validation"])
        return np.flatnonzero(train), np.flatnonzero(_period_mask(dates, split["test"]))
    # A random split is rebuilt from its seed and sizes, then checked against the metadata.
    n_rows, n_test = len(dates), int(split["test"]["weeks"])
    n_val = int(split["validation"]["weeks"])
    rebuilt = split_weeks(
        n_rows, n_test / n_rows, n_val / (n_rows - n_test), "random", int(metadata["seed"])
    )
    for name in ("fit", "validation", "test"):
        rows = getattr(rebuilt, name)
        chosen = dates.iloc[rows]
        if (
            len(rows) != split[name]["weeks"]
            or chosen.min().strftime("%Y-%m-%d") != split[name]["start"]
            or chosen.max().strftime("%Y-%m-%d") != split[name]["end"]
        ):
            raise EvaluationDataError(
                f"the random split of version {metadata.get('version')} cannot be rebuilt from "
                "its metadata; pass --data FILE with the weeks to evaluate on"
            )
    return rebuilt.train, rebuilt.test


def training_dates(settings: Settings, metadata: dict[str, Any]) -> tuple[set[Any], str] | None:
    """The weeks a version learnt from, exactly when its dataset is intact, else by period."""
    import pandas as pd

    from hhforecast.datasets.weekly import load_weekly_dataset

    if not _has_split(metadata):
        return None
    split = metadata["split"]
    path, _ = _trusted_dataset(settings, metadata)
    if path is not None:
        dates = load_weekly_dataset(path, [], None, reading=settings.dataset).frame[DATE_COLUMN]
        train, _ = _split_rows(metadata, dates)
        return set(dates.iloc[train]), "exact weeks"
    periods = [split["fit"], split["validation"]]
    weeks = set()
    for period in periods:
        weeks |= set(pd.date_range(period["start"], period["end"], freq="D"))
    return weeks, "training periods (dataset unavailable)"


def evaluation_frame(
    settings: Settings,
    version: str,
    metadata: dict[str, Any],
    columns: list[str],
    target: str,
    data: Path | LabelledWeeks | None,
    warnings: list[str],
) -> EvaluationFrame:
    """The weeks to score `version` on, with its training weeks for fitting the baselines."""
    import pandas as pd

    from hhforecast.datasets.weekly import load_weekly_dataset

    own_path, own_label = _trusted_dataset(settings, metadata)
    if data is None:
        if own_path is None:
            raise EvaluationDataError(
                f"cannot find the held-out weeks of version {version}: {own_label}. Pass "
                f"--data FILE with labelled weeks (date, the features and {target}) to "
                "evaluate on"
            )
        own = load_weekly_dataset(own_path, columns, target, reading=settings.dataset)
        train, test = _split_rows(metadata, own.frame[DATE_COLUMN])
        frame = own.frame
        source, label = f"held-out test weeks of {version}", own_label
    else:
        given = (
            LabelledWeeks.read(data, columns, target, settings.dataset)
            if isinstance(data, Path)
            else data.with_columns(columns, target)
        )
        frame, source, label = given.frame, given.source, given.dataset
        train = np.array([], dtype=int)
        if own_path is not None and _has_split(metadata):
            own_frame = load_weekly_dataset(
                own_path, columns, target, reading=settings.dataset
            ).frame
            own_train, _ = _split_rows(metadata, own_frame[DATE_COLUMN])
            # The candidate's training weeks come first so the baselines can be fitted and the
            # naive forecasts have a week before; a week present in both is scored from --data.
            history = own_frame.iloc[own_train]
            trained_dates = history[DATE_COLUMN]
            history = history[~history[DATE_COLUMN].isin(frame[DATE_COLUMN])]
            frame = pd.concat([history, frame]).sort_values(DATE_COLUMN).reset_index(drop=True)
            train = np.flatnonzero(frame[DATE_COLUMN].isin(trained_dates).to_numpy())
        else:
            warnings.append(
                f"version {version}'s training weeks cannot be read ({own_label}); the "
                "baselines are fitted on the weeks of --data inside its training period, if any"
            )
            split = metadata.get("split") or {}
            if _has_split(metadata):
                inside = _period_mask(frame[DATE_COLUMN], split["fit"]) | _period_mask(
                    frame[DATE_COLUMN], split["validation"]
                )
                train = np.flatnonzero(inside)
        test = np.flatnonzero(frame[DATE_COLUMN].isin(given.frame[DATE_COLUMN]).to_numpy())
    if len(test) == 0:
        raise EvaluationDataError(f"there are no weeks to evaluate version {version} on")
    chosen = frame[DATE_COLUMN].iloc[test]
    weeks = EvaluationWeeks(
        source=source,
        dataset=label,
        start=chosen.min().strftime("%Y-%m-%d"),
        end=chosen.max().strftime("%Y-%m-%d"),
        weeks=len(test),
    )
    return EvaluationFrame(frame=frame, test=test, train=train, weeks=weeks)


def overlap(name: str, trained: tuple[set[Any], str] | None, evaluated: Any) -> Overlap | None:
    """How many of the `evaluated` dates are among a model's `trained` weeks."""
    if trained is None:
        return None
    weeks, method = trained
    hits = sorted(d for d in evaluated if d in weeks)
    return Overlap(
        model=name,
        weeks=len(hits),
        first=hits[0].strftime("%Y-%m-%d") if hits else None,
        last=hits[-1].strftime("%Y-%m-%d") if hits else None,
        method=method,
    )


def training_end(metadata: dict[str, Any]) -> pd.Timestamp | None:
    """The last week a version learnt from (its fit and validation weeks), if recorded."""
    import pandas as pd

    split = metadata.get("split", {})
    ends = [split[part]["end"] for part in ("fit", "validation") if part in split]
    return pd.Timestamp(max(ends)) if ends else None


@dataclass(frozen=True)
class FairWeeks:
    """Labelled weeks neither of two versions learnt from: those after either's last training
    week. Only there does the lower RMSE show the better forecaster, not the better memory."""

    weeks: LabelledWeeks
    offered: int
    """Labelled weeks there were before the cut."""
    offered_source: str
    """What those were ("held-out test weeks of 1.1.0", "labelled weeks of recent.csv")."""
    after: str
    """The last week either version was trained on (YYYY-MM-DD)."""
    trained_until: dict[str, str]
    """Each version's last training week."""

    @property
    def count(self) -> int:
        return len(self.weeks.frame)


def fair_weeks(
    settings: Settings,
    candidate: tuple[str, dict[str, Any]],
    production: tuple[str, dict[str, Any]],
    columns: list[str],
    target: str,
    data: Path | LabelledWeeks | None,
    *,
    check_labels: bool = True,
) -> FairWeeks:
    """The weeks to judge `candidate` against `production` on, each given as (version, metadata).

    The labelled weeks are `data` (a file or weeks in memory) or, by default, the candidate's
    held-out test weeks re-read from its dataset; only those after both versions' last training
    week are kept. Unless they come from a file the user names, their labels must agree with
    production's dataset wherever both hold a week: a candidate trained on a wrong export is
    not judged by that export's own labels.
    """
    ends: dict[str, str] = {}
    for version, metadata in (candidate, production):
        end = training_end(metadata) if _has_split(metadata) else None
        if end is None:
            raise EvaluationDataError(
                f"the metadata of version {version} does not record which weeks it was trained "
                "on, so no week can be shown to be unseen by it; retrain it with hhforecast"
            )
        ends[version] = end.strftime("%Y-%m-%d")
    after = max(ends.values())
    name, metadata = candidate
    if data is None:
        labelled = _held_out_weeks(settings, name, metadata, columns, target)
    elif isinstance(data, Path):
        labelled = LabelledWeeks.read(data, columns, target, settings.dataset)
    else:
        labelled = data.with_columns(columns, target)
    import pandas as pd

    frame = labelled.frame
    kept = frame[frame[DATE_COLUMN] > pd.Timestamp(after)].reset_index(drop=True)
    if check_labels and not isinstance(data, Path):
        _check_against_production(settings, labelled.dataset, production, kept, target)
    source = f"{labelled.source} after {after}: the fair weeks, which neither version trained on"
    return FairWeeks(
        LabelledWeeks(kept, source, labelled.dataset),
        len(frame),
        labelled.source,
        after,
        dict(ends),
    )


def disagreeing_weeks(first: Any, second: Any, target: str) -> tuple[int, int]:
    """(weeks whose `target` differs, weeks both frames hold), matched by date."""
    both = first[[DATE_COLUMN, target]].merge(
        second[[DATE_COLUMN, target]], on=DATE_COLUMN, suffixes=("_a", "_b")
    )
    differ = ~np.isclose(both[f"{target}_a"], both[f"{target}_b"], rtol=1e-9, atol=1e-6)
    return int(differ.sum()), len(both)


def _check_against_production(
    settings: Settings,
    label: str,
    production: tuple[str, dict[str, Any]],
    weeks: Any,
    target: str,
) -> None:
    from hhforecast.datasets.weekly import load_weekly_dataset

    name, metadata = production
    path, theirs = _trusted_dataset(settings, metadata)
    if path is None or weeks.empty:
        return  # nothing to hold them against
    differ, shared = disagreeing_weeks(weeks, load_weekly_dataset(path, [], target).frame, target)
    if differ:
        raise EvaluationDataError(
            f"the candidate's dataset {label} and production {name}'s dataset {theirs} give "
            f"different {target} for {differ} of the {shared} fair weeks both hold, so the "
            "candidate cannot be judged on its own labels; pass --data FILE with labelled weeks "
            "you trust"
        )


def _held_out_weeks(
    settings: Settings, version: str, metadata: dict[str, Any], columns: list[str], target: str
) -> LabelledWeeks:
    from hhforecast.datasets.weekly import load_weekly_dataset

    path, label = _trusted_dataset(settings, metadata)
    if path is None:
        raise EvaluationDataError(
            f"cannot find the held-out weeks of version {version}: {label}. Pass --data FILE "
            f"with labelled weeks (date, the features and {target}) to evaluate on"
        )
    frame = load_weekly_dataset(path, columns, target, reading=settings.dataset).frame
    _, test = _split_rows(metadata, frame[DATE_COLUMN])
    rows = frame.iloc[test].reset_index(drop=True)
    return LabelledWeeks(rows, f"held-out test weeks of {version}", label)

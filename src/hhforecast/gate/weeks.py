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
from hhforecast.datasets import DATE_COLUMN
from hhforecast.errors import EXIT_BAD_INPUT, HHForecastError

if TYPE_CHECKING:
    import pandas as pd

    from hhforecast.gate.handle import VersionHandle

__all__ = [
    "EvaluationDataError",
    "EvaluationFrame",
    "EvaluationWeeks",
    "FairWeeks",
    "LabelledWeeks",
    "Overlap",
    "describe_disagreement",
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


def training_dates(version: VersionHandle) -> tuple[set[Any], str] | None:
    """The weeks a version's served fit learnt, exactly when its dataset is intact, else by
    period: every week up to `trained_through` for a fit refit on all weeks (`served_fit`),
    else its fit and validation weeks."""
    import pandas as pd

    metadata = version.metadata
    served = _served_period(metadata)
    if served is None and not _has_split(metadata):
        return None
    own = version.dataset()
    if own.frame is not None:
        dates = own.frame[DATE_COLUMN]
        if served is not None:
            return set(dates[_period_mask(dates, served)]), "exact weeks"
        train, _ = _split_rows(metadata, dates)
        return set(dates.iloc[train]), "exact weeks"
    periods = (
        [served] if served is not None else [metadata["split"][p] for p in ("fit", "validation")]
    )
    weeks = set()
    for period in periods:
        weeks |= set(pd.date_range(period["start"], period["end"], freq="D"))
    return weeks, "training periods (dataset unavailable)"


def _served_period(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The period the served fit learnt (start, end), when the metadata records it."""
    served = metadata.get("served_fit")
    if isinstance(served, dict) and served.get("start") and served.get("end"):
        return served
    return None


def evaluation_frame(
    settings: Settings,
    version: VersionHandle,
    columns: list[str],
    target: str,
    data: Path | LabelledWeeks | None,
    warnings: list[str],
) -> EvaluationFrame:
    """The weeks to score `version` on, with its training weeks for fitting the baselines."""
    import pandas as pd

    metadata = version.metadata
    own = version.dataset()
    if data is None:
        if own.frame is None:
            raise EvaluationDataError(
                f"cannot find the held-out weeks of version {version.name}: {own.label}. Pass "
                f"--data FILE with labelled weeks (date, the features and {target}) to "
                "evaluate on"
            )
        frame = _with_columns(own.frame, columns, target, own.label)
        train, test = _split_rows(metadata, frame[DATE_COLUMN])
        source, label = f"held-out test weeks of {version.name}", own.label
    else:
        given = (
            LabelledWeeks.read(data, columns, target, settings.dataset)
            if isinstance(data, Path)
            else data.with_columns(columns, target)
        )
        frame, source, label = given.frame, given.source, given.dataset
        train = np.array([], dtype=int)
        if own.frame is not None and _has_split(metadata):
            own_frame = _with_columns(own.frame, columns, target, own.label)
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
                f"version {version.name}'s training weeks cannot be read ({own.label}); the "
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
        raise EvaluationDataError(f"there are no weeks to evaluate version {version.name} on")
    chosen = frame[DATE_COLUMN].iloc[test]
    weeks = EvaluationWeeks(
        source=source,
        dataset=label,
        start=chosen.min().strftime("%Y-%m-%d"),
        end=chosen.max().strftime("%Y-%m-%d"),
        weeks=len(test),
    )
    return EvaluationFrame(frame=frame, test=test, train=train, weeks=weeks)


def _with_columns(frame: pd.DataFrame, columns: list[str], target: str, label: str) -> Any:
    """A dataset's weeks reduced to `columns` and the target, checked to be there."""
    return LabelledWeeks(frame, label, label).with_columns(columns, target).frame


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
    """The last week a version's served fit learnt (every week up to `trained_through` when it
    was refit on all weeks; its fit and validation weeks otherwise), if recorded."""
    import pandas as pd

    served = _served_period(metadata)
    if served is not None:
        return pd.Timestamp(served["end"])
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
    candidate: VersionHandle,
    production: VersionHandle,
    columns: list[str],
    target: str,
    data: Path | LabelledWeeks | None,
    *,
    check_labels: bool = True,
) -> FairWeeks:
    """The weeks to judge `candidate` against `production` on.

    The labelled weeks are `data` (a file or weeks in memory) or, by default, the candidate's
    held-out test weeks re-read from its dataset; only those after both versions' last training
    week are kept. Unless they come from a file the user names, every column of every week the
    candidate's data shares with production's dataset must agree with it: a candidate trained
    on a wrong export (scrambled features, other labels) is not judged on that export.
    """
    ends: dict[str, str] = {}
    for version in (candidate, production):
        end = training_end(version.metadata) if _has_split(version.metadata) else None
        if end is None:
            raise EvaluationDataError(
                f"the metadata of version {version.name} does not record which weeks it was "
                "trained on, so no week can be shown to be unseen by it; retrain it with "
                "hhforecast"
            )
        ends[version.name] = end.strftime("%Y-%m-%d")
    after = max(ends.values())
    if data is None:
        labelled = _held_out_weeks(candidate, columns, target)
    elif isinstance(data, Path):
        labelled = LabelledWeeks.read(data, columns, target, settings.dataset)
    else:
        labelled = data.with_columns(columns, target)
    import pandas as pd

    frame = labelled.frame
    kept = frame[frame[DATE_COLUMN] > pd.Timestamp(after)].reset_index(drop=True)
    if check_labels and not isinstance(data, Path):
        _check_against_production(candidate, production, kept, columns, target)
    source = f"{labelled.source} after {after}: the fair weeks, which neither version trained on"
    return FairWeeks(
        LabelledWeeks(kept, source, labelled.dataset),
        len(frame),
        labelled.source,
        after,
        dict(ends),
    )


def disagreeing_weeks(first: Any, second: Any, columns: list[str]) -> dict[str, tuple[int, int]]:
    """For each of `columns` both frames hold: (weeks whose value differs, weeks both hold),
    matched by date; only the columns that differ somewhere are listed."""
    shared = [c for c in dict.fromkeys(columns) if c in first.columns and c in second.columns]
    both = first[[DATE_COLUMN, *shared]].merge(
        second[[DATE_COLUMN, *shared]], on=DATE_COLUMN, suffixes=("_a", "_b")
    )
    found = {}
    for column in shared:
        differ = ~np.isclose(both[f"{column}_a"], both[f"{column}_b"], rtol=1e-9, atol=1e-6)
        if differ.any():
            found[column] = (int(differ.sum()), len(both))
    return found


def describe_disagreement(found: dict[str, tuple[int, int]]) -> str:
    """'different HH for 3 of the 40 weeks, different acft for 40 of the 40 weeks'."""
    return ", ".join(
        f"different {column} for {n} of the {shared} weeks" for column, (n, shared) in found.items()
    )


def _check_against_production(
    candidate: VersionHandle,
    production: VersionHandle,
    fair: Any,
    columns: list[str],
    target: str,
) -> None:
    """The candidate's data must agree with production's dataset: every feature on every week
    both hold (a wrong column mapping scrambles them all), and the target on the fair weeks (an
    export may correct the labels of weeks production learnt from; not of the weeks judged)."""
    theirs = production.dataset()
    if theirs.frame is None:
        return  # nothing to hold them against
    own = candidate.dataset()
    features = [c for c in columns if c != target]
    found = {}
    if own.frame is not None:
        found = disagreeing_weeks(own.frame, theirs.frame, features)
        features = []  # every week of them checked already, the fair ones among them
    found.update(disagreeing_weeks(fair, theirs.frame, [*features, target]))
    if found:
        label = own.label if own.frame is not None else "of the candidate"
        raise EvaluationDataError(
            f"the candidate's dataset {label} and production {production.name}'s dataset "
            f"{theirs.label} disagree on the weeks both hold ({describe_disagreement(found)}), "
            "so the candidate cannot be judged on its own data; check the export and its "
            "column mapping, or pass --data FILE with labelled weeks you trust"
        )


def _held_out_weeks(version: VersionHandle, columns: list[str], target: str) -> LabelledWeeks:
    own = version.dataset()
    if own.frame is None:
        raise EvaluationDataError(
            f"cannot find the held-out weeks of version {version.name}: {own.label}. Pass "
            f"--data FILE with labelled weeks (date, the features and {target}) to evaluate on"
        )
    frame = _with_columns(own.frame, columns, target, own.label)
    _, test = _split_rows(version.metadata, frame[DATE_COLUMN])
    rows = frame.iloc[test].reset_index(drop=True)
    return LabelledWeeks(rows, f"held-out test weeks of {version.name}", own.label)

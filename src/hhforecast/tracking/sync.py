"""Bringing MLflow in line with the local registry, which stays the source of truth.

`promote` and `rollback` move the local pointer first, then the `production` alias
(`mirror_promotion`); if MLflow cannot be reached the local move stands and the command says so.
`hhforecast mlflow sync` later registers every version MLflow lacks (versions trained before
tracking was on, or while the server was down), moves the alias to local production, and the
`challenger` alias to the local challenger (or removes it when none is named).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hhforecast.config import Settings
from hhforecast.errors import HHForecastError
from hhforecast.modeling.artifacts import read_metadata
from hhforecast.registry.history import PromotionRecord, current_user
from hhforecast.registry.store import ModelVersion, Registry
from hhforecast.tracking.client import (
    VERSION_TAG,
    MlflowConnection,
    MlflowUnreachableError,
    connect,
    tracking_enabled,
)
from hhforecast.tracking.mirror import (
    AliasMove,
    find_model_version,
    move_production_alias,
    production_model_version,
    register_version,
    tagged_version,
)
from hhforecast.tracking.runs import METADATA_KEY, RunOutcome, log_version, public_uri

__all__ = [
    "CHALLENGER_ALIAS",
    "MirrorOutcome",
    "SyncReport",
    "mirror_challenger",
    "mirror_promotion",
    "mirror_serving",
    "sync",
]

CHALLENGER_ALIAS = "challenger"


@dataclass
class MirrorOutcome:
    """What a promotion did in MLflow: the aliases it moved, or why it could not."""

    tracking: bool
    moves: list[AliasMove] = field(default_factory=list)
    backfilled: list[str] = field(default_factory=list)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking": self.tracking,
            "moves": [m.to_dict() for m in self.moves],
            "backfilled": self.backfilled,
            "problem": self.problem,
        }

    def warning(self) -> str | None:
        """What the command prints when MLflow was not brought in line."""
        if self.problem is None:
            return None
        return (
            f"{self.problem}. The local promotion stands (config.yaml and registry.json are the "
            "source of truth); run `hhforecast mlflow sync` once MLflow is back."
        )


def _variants(metadata: dict[str, Any]) -> list[str]:
    return list(metadata.get("variants", {}))


def _ensure_mirrored(
    conn: MlflowConnection, registry: Registry, entry: ModelVersion
) -> tuple[dict[str, Any], bool]:
    """Make sure every variant of `entry` is a registered model version; True if it had to
    register some (logging a `backfill` run when the version has no run on this server)."""
    folder = registry.version_dir(entry)
    metadata = read_metadata(folder)
    trained_at = str(metadata.get("trained_at", ""))
    missing = [
        v
        for v in _variants(metadata)
        if find_model_version(conn, v, entry.version, trained_at) is None
    ]
    if not missing:
        return metadata, False
    run_id = _existing_run(conn, metadata, entry)
    if run_id is None:
        experiment = conn.call("find the experiment", conn.experiment_id)
        run = conn.call(
            "start a run",
            conn.client.create_run,
            experiment,
            run_name=f"backfill {entry.version}",
        )
        run_id = run.info.run_id
        log_version(conn, run_id, folder, entry.version, "backfill")
        register_version(conn, run_id, folder, entry.version)
        conn.call("end the run", conn.client.set_terminated, run_id, "FINISHED")
        # The entry keeps every field it had, plus the run that now mirrors it.
        fields = {k: v for k, v in entry.to_entry().items() if k not in ("version", "path")}
        fields.update(mlflow_run_id=run_id, mlflow_tracking_uri=public_uri(conn.uri))
        registry.register_folder(folder, fields)
    else:
        register_version(conn, run_id, folder, entry.version)
    return metadata, True


def _existing_run(
    conn: MlflowConnection, metadata: dict[str, Any], entry: ModelVersion
) -> str | None:
    """The run recorded for this version, if this server has it with the version folder."""
    recorded = metadata.get(METADATA_KEY, {}).get("run_id") or entry.extra.get("mlflow_run_id")
    if not recorded:
        return None
    try:
        run = conn.client.get_run(recorded)
        listed = conn.client.list_artifacts(recorded, "version")
    except Exception:  # another server, or deleted: a new run is logged instead
        return None
    if run.data.tags.get(VERSION_TAG) != entry.version or not listed:
        return None
    return str(recorded)


@dataclass(frozen=True)
class AliasMoveReason:
    """What the `production` tags of a move say: which command, why, when and who."""

    action: str
    reason: str
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    user: str = field(default_factory=current_user)

    @classmethod
    def of(cls, record: PromotionRecord) -> AliasMoveReason:
        return cls(record.action, record.reason, record.at, record.user)


def _move_aliases(
    conn: MlflowConnection,
    registry: Registry,
    entry: ModelVersion,
    why: AliasMoveReason,
    outcome: MirrorOutcome,
) -> None:
    metadata, backfilled = _ensure_mirrored(conn, registry, entry)
    if backfilled:
        outcome.backfilled.append(entry.version)
    trained_at = str(metadata.get("trained_at", ""))
    for variant in _variants(metadata):
        model_version = find_model_version(conn, variant, entry.version, trained_at)
        if model_version is None:  # registered a moment ago: only a broken server says this
            raise HHForecastError(f"MLflow lost the model version of {entry.version} ({variant})")
        current = production_model_version(conn, variant)
        if current is not None and str(current.version) == str(model_version.version):
            continue
        outcome.moves.append(
            move_production_alias(
                conn,
                variant,
                model_version,
                action=why.action,
                reason=why.reason,
                at=why.at,
                user=why.user,
            )
        )


def mirror_promotion(settings: Settings, record: PromotionRecord) -> MirrorOutcome:
    """After a local promotion or rollback: move `production` on every registered model."""
    outcome = MirrorOutcome(tracking=tracking_enabled(settings))
    if not outcome.tracking:
        return outcome
    try:
        conn = connect(settings)
        registry = Registry(settings)
        entry = registry.get(record.to_version)
        _move_aliases(conn, registry, entry, AliasMoveReason.of(record), outcome)
    except HHForecastError as exc:
        outcome.problem = str(exc)
    except Exception as exc:  # MLflow is bookkeeping: never undo a local promotion over it
        outcome.problem = f"MLflow failed: {type(exc).__name__}: {exc}"
    return outcome


def _challenger_model_version(conn: MlflowConnection, variant: str) -> Any | None:
    """The model version `challenger` points at for a variant (None if unset or no model)."""
    from mlflow.exceptions import MlflowException

    try:
        return conn.client.get_model_version_by_alias(conn.model_name(variant), CHALLENGER_ALIAS)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise MlflowUnreachableError(conn.uri, "read the challenger alias", exc) from None
    except Exception as exc:  # refused, timed out: MLflow cannot say where the alias is
        raise MlflowUnreachableError(conn.uri, "read the challenger alias", exc) from None


def _align_challenger(
    conn: MlflowConnection, registry: Registry, variants: list[str], version: str | None
) -> tuple[list[AliasMove], bool]:
    """Point `challenger` at `version` on every registered model, or remove it (`version`
    None) from those of `variants`; an alias already where it should be is left alone. The
    moves (a removal has an empty `version`) and whether `version` had to be registered."""
    moves = []
    if version is None:
        for variant in variants:
            before = _challenger_model_version(conn, variant)
            if before is None:
                continue
            name = conn.model_name(variant)
            conn.call(
                "remove the challenger alias",
                conn.client.delete_registered_model_alias,
                name,
                CHALLENGER_ALIAS,
            )
            moves.append(AliasMove(name, "", "", tagged_version(before)))
        return moves, False
    entry = registry.get(version)
    metadata, backfilled = _ensure_mirrored(conn, registry, entry)
    for variant in _variants(metadata):
        found = find_model_version(conn, variant, version, str(metadata.get("trained_at", "")))
        if found is None:
            raise HHForecastError(f"MLflow lost the model version of {version} ({variant})")
        before = _challenger_model_version(conn, variant)
        if before is not None and str(before.version) == str(found.version):
            continue
        name = conn.model_name(variant)
        conn.call(
            "move the challenger alias",
            conn.client.set_registered_model_alias,
            name,
            CHALLENGER_ALIAS,
            found.version,
        )
        previous = tagged_version(before) if before is not None else None
        moves.append(AliasMove(name, str(found.version), version, previous))
    return moves, backfilled


def mirror_challenger(settings: Settings, version: str | None) -> MirrorOutcome:
    """After the challenger was named (or cleared, `version` None): move (or remove) the
    `challenger` alias on every registered model. A failure is reported, never undoes it."""
    outcome = MirrorOutcome(tracking=tracking_enabled(settings))
    if not outcome.tracking:
        return outcome
    try:
        conn = connect(settings)
        variants = list(settings.training.variants)
        moves, backfilled = _align_challenger(conn, Registry(settings), variants, version)
        # What the command prints are the aliases now set; a removal is said by its verdict.
        outcome.moves += [move for move in moves if move.version]
        outcome.backfilled += [str(version)] if backfilled else []
    except HHForecastError as exc:
        outcome.problem = str(exc)
    except Exception as exc:  # MLflow is bookkeeping: never undo a local change over it
        outcome.problem = f"MLflow failed: {type(exc).__name__}: {exc}"
    return outcome


def mirror_serving(settings: Settings, run: RunOutcome, version: str) -> None:
    """A version that serves the moment it is registered (production follows "latest"): point
    `production` at it in MLflow too; what happened is added to the training's `run`."""
    if run.run_id is None or run.problem is not None:
        return  # not tracked: `mlflow sync` moves the alias later
    try:
        conn = connect(settings)
        registry = Registry(settings)
        outcome = MirrorOutcome(tracking=True)
        why = AliasMoveReason("train", 'trained while production follows "latest"')
        _move_aliases(conn, registry, registry.get(version), why, outcome)
        run.aliases = [m.to_dict() for m in outcome.moves]
    except HHForecastError as exc:
        run.problem = str(exc)


@dataclass
class SyncReport:
    """What `hhforecast mlflow sync` found and did."""

    tracking_uri: str
    versions: int
    backfilled: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    production: str | None = None
    moves: list[AliasMove] = field(default_factory=list)
    challenger: str | None = None
    """The local challenger, which the `challenger` alias now follows (None: removed)."""
    challenger_moves: list[AliasMove] = field(default_factory=list)
    """The `challenger` aliases moved or removed (a removal has an empty `version`)."""

    def to_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["moves"] = [m.to_dict() for m in self.moves]
        data["challenger_moves"] = [m.to_dict() for m in self.challenger_moves]
        return data


def sync(settings: Settings) -> SyncReport:
    """Register every local version MLflow lacks, point `production` at local production, and
    `challenger` at the local challenger (removed when none is named).

    Raises MlflowUnreachableError when MLflow cannot be reached (nothing local changes).
    """
    conn = connect(settings)
    registry = Registry(settings)
    versions = registry.versions()
    report = SyncReport(public_uri(conn.uri), len(versions))
    conn.call("find the experiment", conn.experiment_id)
    production = registry.production_version()
    for entry in versions:
        try:
            metadata = read_metadata(registry.version_dir(entry))
        except HHForecastError as exc:
            report.skipped[entry.version] = str(exc)
            continue
        if "variants" not in metadata:
            report.skipped[entry.version] = "trained by the original system; hhforecast cannot "
            report.skipped[entry.version] += "serve it, so it is not mirrored"
            continue
        if production is not None and entry.version == production.version:
            continue  # mirrored below, with its alias
        _, backfilled = _ensure_mirrored(conn, registry, entry)
        (report.backfilled if backfilled else report.already).append(entry.version)
    if production is not None:
        report.production = production.version
        last = next(
            (r for r in reversed(registry.promotions()) if r.to_version == production.version),
            None,
        )
        why = (
            AliasMoveReason.of(last)
            if last is not None
            else AliasMoveReason("sync", "mlflow sync: local production")
        )
        outcome = MirrorOutcome(tracking=True)
        _move_aliases(conn, registry, production, why, outcome)
        report.moves = outcome.moves
        (report.backfilled if outcome.backfilled else report.already).append(production.version)
    # A challenger named or cleared while MLflow was down: its alias follows it now.
    report.challenger = registry.snapshot().challenger
    report.challenger_moves, _ = _align_challenger(
        conn, registry, list(settings.training.variants), report.challenger
    )
    return report

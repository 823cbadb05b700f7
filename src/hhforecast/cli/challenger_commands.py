"""`hhforecast promote VERSION --challenger` and `hhforecast registry clear-challenger`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hhforecast.cli._common import console, err_console, print_json

if TYPE_CHECKING:
    from hhforecast.config import Settings
    from hhforecast.gate.challenger import ChallengerResult


def name_challenger(
    settings: Settings, version: str, variant: str | None, reason: str, json_output: bool
) -> None:
    """Name the challenger and say what that changes."""
    from hhforecast.gate.challenger import name_challenger as name
    from hhforecast.registry.store import Registry

    result = name(settings, version, variant=variant, reason=reason)
    production = Registry(settings).production_version()
    if json_output:
        print_json(_json(result))
        return
    if result.record is None:
        console.print(f"{version} is already the challenger; nothing was changed.", highlight=False)
        return
    before = result.record.from_version
    console.print(
        f"Challenger: {version}"
        + (f" (was {before})" if before else "")
        + f". It forecasts beside production {production.version if production else '-'}: "
        "every forecast logged for production is computed by it too, for `hhforecast monitor` "
        f"to compare on realised weeks. Clear it with: hhforecast registry clear-challenger",
        highlight=False,
    )
    _warn_mlflow(result)


def clear_challenger(settings: Settings, reason: str, json_output: bool) -> None:
    """Clear the challenger and say so."""
    from hhforecast.gate.challenger import clear_challenger as clear

    result = clear(settings, reason)
    if json_output:
        print_json(_json(result))
        return
    if result.record is None:
        console.print("There is no challenger; nothing was changed.", highlight=False)
        return
    console.print(
        f"Cleared the challenger {result.record.to_version}: production forecasts alone.",
        highlight=False,
    )
    _warn_mlflow(result)


def _json(result: ChallengerResult) -> dict[str, object]:
    data: dict[str, object] = {
        "challenger_version": result.challenger,
        "changed": result.record is not None,
        "history_entry": result.record.to_entry() if result.record else None,
    }
    if result.mlflow is not None:
        data["mlflow"] = result.mlflow.to_dict()
    return data


def _warn_mlflow(result: ChallengerResult) -> None:
    if result.mlflow is not None and result.mlflow.problem:
        err_console.print(
            f"[yellow]Warning:[/] {result.mlflow.problem}. The challenger is set locally "
            "(registry.json is the source of truth); MLflow's `challenger` alias was not moved: "
            "run `hhforecast mlflow sync` once MLflow is back.",
            highlight=False,
        )

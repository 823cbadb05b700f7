"""The exceptions hhforecast raises for a user's mistake or a check's "no" verdict.

Every class builds its own message: what was wrong, where, and how to fix it. The CLI prints
``Error: <message>`` and exits with ``exit_code``; the API turns them into a 4xx JSON body.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CHECK_FAILED",
    "ArtifactError",
    "ConfigError",
    "DatasetError",
    "ForeignVersionError",
    "HHForecastError",
    "PlanError",
    "RegistryCorruptError",
    "RegistryError",
    "SampleNotChosenError",
    "VariantNotFoundError",
    "VersionExistsError",
    "VersionNotFoundError",
]

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


class HHForecastError(Exception):
    """Base of every error hhforecast reports to a user without a traceback."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(HHForecastError):
    """The configuration file is missing, unreadable or holds a wrong key or value."""

    def __init__(
        self,
        source: Path | str,
        problem: str,
        hint: str = "Fix the value in the config file (see docs/configuration.md for every key).",
    ) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}. {hint}")


class DatasetError(HHForecastError):
    """A weekly dataset cannot be used: missing column, bad value, wrong order, too short."""

    kind = "dataset"
    """What the file is to the user, the first word of the message."""

    def __init__(self, source: Path | str, problem: str, hint: str = "") -> None:
        self.source = str(source)
        self.problem = problem
        self.hint = hint
        message = f"{self.kind} {source}: {problem}."
        if hint:
            message += f" {hint}"
        super().__init__(message)


class PlanError(DatasetError):
    """A plan of weeks to forecast cannot be used (read like a weekly dataset)."""

    kind = "plan"


class SampleNotChosenError(HHForecastError):
    """The config describes the user's own data, yet no dataset was named: the bundled
    simulated sample would be used without the user asking for it."""

    def __init__(self, config_file: Path | str, own_keys: list[str]) -> None:
        self.own_keys = own_keys
        super().__init__(
            f"{config_file} describes your own data ({', '.join(own_keys)}) but names no weekly "
            "dataset (paths.dataset is null), so the simulated sample fleet bundled with "
            "hhforecast would be used. Pass --dataset FILE (a weekly CSV, such as one made by "
            "`hhforecast dataset build`), set paths.dataset, or pass --sample to use the "
            "simulated sample anyway."
        )


class RegistryError(HHForecastError):
    """The registry cannot do what was asked (unknown version, bad name, protected version)."""


class RegistryCorruptError(RegistryError):
    """registry.json exists but cannot be parsed; it is reported and never overwritten."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"the registry file {path} is corrupt ({problem}). It was left untouched: "
            "restore it from a backup or fix it by hand, then try again."
        )


class VersionNotFoundError(RegistryError):
    """A version named by the user or by config.yaml is not in the registry."""

    def __init__(self, version: str, known: list[str], where: str = "") -> None:
        self.version = version
        listing = ", ".join(known[-10:]) if known else "none; run `hhforecast train` first"
        origin = f" (named by {where})" if where else ""
        super().__init__(
            f"version {version!r}{origin} is not in the registry. Known versions: {listing}."
        )


class VersionExistsError(RegistryError):
    """A training asked for a version name that is already taken."""

    def __init__(
        self, version: str, *, production: bool = False, rollback_target: str | None = None
    ) -> None:
        self.version = version
        if production:
            message = (
                f"version {version!r} is in production and is never overwritten. "
                "Train under another name (omit --version for a dated one)."
            )
        elif rollback_target is not None:
            message = (
                f"version {version!r} is the version `hhforecast rollback` would return to "
                f"(it served before {rollback_target}) and is never overwritten. "
                "Train under another name (omit --version for a dated one)."
            )
        else:
            message = (
                f"version {version!r} already exists. Choose another --version, "
                "or pass --force to replace it."
            )
        super().__init__(message)


class ArtifactError(HHForecastError):
    """A version folder is missing an artifact or an artifact does not match its checksum."""

    exit_code = EXIT_CHECK_FAILED


class ForeignVersionError(ArtifactError):
    """A version folder hhforecast did not train (for example one from the original system)."""

    def __init__(self, version_dir: Path | str) -> None:
        super().__init__(
            f"{version_dir} was not trained by hhforecast: its model_metadata.json has no "
            "'variants' (the features, training ranges and interval calibration that every "
            "prediction and check needs), as in versions trained by the original system. It can "
            "be listed but not served, checked or promoted; retrain it on the same data, e.g. "
            "hhforecast train --dataset FILE --version NEW"
        )


class VariantNotFoundError(HHForecastError):
    """A variant name that the version does not have."""

    def __init__(self, where: Path | str, variant: str, known: list[str]) -> None:
        self.variant = variant
        super().__init__(
            f"{where} has no variant {variant!r} (variants: {', '.join(known) or 'none'}); "
            "pass --variant with one of them"
        )

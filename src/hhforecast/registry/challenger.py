"""The challenger: a version named in registry.json that forecasts beside production.

Every forecast logged for production is also computed by the challenger and logged beside it, so
that on the weeks that have since happened the two can be compared on forecasts made before the
weeks were known. Naming or clearing it is recorded in the history (actions ``challenger`` and
``clear-challenger``); a challenger promoted to production stops being the challenger.
"""

from __future__ import annotations

from hhforecast.errors import EXIT_BAD_INPUT, RegistryError, VersionNotFoundError
from hhforecast.registry.entries import BadEntryError
from hhforecast.registry.history import PromotionRecord, RmseComparison, new_record
from hhforecast.registry.store import Registry, Verify

__all__ = ["ChallengerError", "set_challenger"]

NAME = "challenger"
CLEAR = "clear-challenger"


class ChallengerError(RegistryError):
    """A version that cannot be the challenger (it is production), or no challenger to clear."""

    exit_code = EXIT_BAD_INPUT


def set_challenger(
    registry: Registry,
    version: str | None,
    *,
    variant: str,
    reason: str,
    verify: Verify | None = None,
) -> PromotionRecord | None:
    """Name `version` the challenger (None clears it), recorded; None when nothing changed.

    Decided under the registry's lock on registry.json and the pointer as they are then: the
    challenger is never the production version, and `verify` checks its files there.
    """
    with registry.locked():
        document = registry.read_document()
        setting, production, _ = registry.production_state(document)
        before = document.challenger
        if version is None:
            if before is None:
                return None
            action, target = CLEAR, before
        else:
            entry = next((v for v in document.versions if v.version == version), None)
            if entry is None:
                raise VersionNotFoundError(version, [v.version for v in document.versions])
            problem = registry.entry_problem(entry)
            if problem is not None:
                raise BadEntryError(version, registry.path, problem)
            if version == production:
                raise ChallengerError(
                    f"{version} is the production version; a challenger is judged against "
                    "production, so it must be another version. Train one, then name it: "
                    "hhforecast promote NEW_VERSION --challenger"
                )
            if version == before:
                return None
            if verify is not None:
                verify(entry, None)
            action, target = NAME, version
        record = new_record(
            action,
            (before, setting),
            target,
            variant,
            reason,
            "integrity" if version is not None else "",
            RmseComparison(
                production, None, None, "not compared: a challenger is named, not judged"
            ),
        )
        document.challenger = version
        document.history.append(record.to_entry())
        registry.write_document(document)
        return record

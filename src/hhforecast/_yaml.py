"""config.yaml read as YAML with limits: a bounded size and no aliases (no "billion laughs")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hhforecast.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "read_config_yaml"]

MAX_CONFIG_BYTES = 1_000_000


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: a config never needs them, and nested aliases expand a few
    hundred bytes into gigabytes (a "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            line = self.peek_event().start_mark.line + 1
            raise yaml.YAMLError(f"line {line}: aliases (*name) are not allowed in a config file")
        return super().compose_node(parent, index)


def read_config_yaml(source: Path) -> Any:
    """The parsed file, or a ConfigError when it is too large or uses aliases."""
    size = source.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            source,
            f"the file is {size:,} bytes; a config file is at most {MAX_CONFIG_BYTES:,}",
            "Check that --config names the YAML config, not a data file.",
        )
    text = source.read_text(encoding="utf-8")
    return yaml.load(text, Loader=_NoAliasLoader) or {}  # a SafeLoader

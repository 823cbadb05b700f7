"""The production pointer: `mlops.production_version` in config.yaml, rewritten in place.

Only the value changes: comments, order and every other key of the user's file are kept.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from hhforecast.errors import ConfigError

MLOPS_SECTION = "mlops"
PRODUCTION_KEY = "production_version"
_NULL_SCALARS = ("", "~", "null", "Null", "NULL")
NEW_CONFIG_HEADER = (
    "# hhforecast configuration, created by `hhforecast promote`. Relative paths are resolved\n"
    "# against this file's folder; every key is described in docs/configuration.md.\n"
)


def _scalar_text(version: str, style: str | None) -> str:
    """`version` written as a YAML scalar in the style the user chose (quoted when it must be)."""
    if style == "'":
        return "'" + version.replace("'", "''") + "'"
    if style is None:
        try:
            if yaml.safe_load(version) == version and ":" not in version and "#" not in version:
                return version
        except yaml.YAMLError:
            pass
    return json.dumps(version, ensure_ascii=False)  # a JSON string is a YAML double-quoted one


def _mapping_value(node: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    # The last occurrence wins, as in yaml.safe_load.
    found = None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found = (key_node, value_node)
    return found


def _end_of_line(text: str, index: int) -> int:
    newline = text.find("\n", index)
    if newline == -1:
        return len(text)
    return newline - 1 if newline > 0 and text[newline - 1] == "\r" else newline


def _last_scalar_end(node: yaml.Node) -> int:
    while (
        isinstance(node, yaml.MappingNode | yaml.SequenceNode)
        and node.value
        and not node.flow_style
    ):
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    return int(node.end_mark.index)


def rewrite_production_version(text: str, version: str, source: Path | str = "config.yaml") -> str:
    """`text` (a config file) with only mlops.production_version set to `version`.

    Every other byte (comments, key order, quoting, line endings) stays as it was: the YAML
    is parsed only to find where the one scalar sits, and that slice of text is replaced. A
    missing key is added to the mlops section, a missing section at the end of the file. The
    result is parsed back and must differ from the original in that one value, else nothing is
    returned and a ConfigError says to edit the file by hand.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    try:
        root = yaml.compose(text)
        before = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "YAML error"
        raise ConfigError(source, f"not valid YAML ({first})") from None
    quoted = json.dumps(version, ensure_ascii=False)
    section = f"{MLOPS_SECTION}:{newline}  {PRODUCTION_KEY}: {quoted}{newline}"
    if root is None:
        rewritten = text + ("" if not text or text.endswith("\n") else newline) + section
    elif not isinstance(root, yaml.MappingNode):
        raise ConfigError(source, "the top level must be a mapping of sections")
    else:
        rewritten = _rewrite_in_root(text, root, version, source, newline, section)
    expected = copy.deepcopy(before) if isinstance(before, dict) else {}
    mlops = expected.get(MLOPS_SECTION)
    expected[MLOPS_SECTION] = {
        **(mlops if isinstance(mlops, dict) else {}),
        PRODUCTION_KEY: version,
    }
    try:
        after = yaml.safe_load(rewritten)
    except yaml.YAMLError:
        after = None
    if after != expected:
        raise ConfigError(
            source,
            f"cannot set {MLOPS_SECTION}.{PRODUCTION_KEY} without changing other values "
            f"(unusual YAML layout); set it by hand to {quoted}",
        )
    return rewritten


def _rewrite_in_root(
    text: str,
    root: yaml.MappingNode,
    version: str,
    source: Path | str,
    newline: str,
    section: str,
) -> str:
    found = _mapping_value(root, MLOPS_SECTION)
    if found is None:
        return text + ("" if not text or text.endswith("\n") else newline) + section
    key_node, mlops = found
    quoted = json.dumps(version, ensure_ascii=False)
    if isinstance(mlops, yaml.ScalarNode) and mlops.value in _NULL_SCALARS:
        if mlops.start_mark.index == mlops.end_mark.index:  # `mlops:` with nothing after it
            at = _end_of_line(text, key_node.end_mark.index)
            return text[:at] + f"{newline}  {PRODUCTION_KEY}: {quoted}" + text[at:]
        start, end = mlops.start_mark.index, mlops.end_mark.index
        return text[:start] + f"{{{PRODUCTION_KEY}: {quoted}}}" + text[end:]
    if not isinstance(mlops, yaml.MappingNode):
        raise ConfigError(source, f"'{MLOPS_SECTION}' must be a mapping of keys")
    pair = _mapping_value(mlops, PRODUCTION_KEY)
    if pair is not None:
        value = pair[1]
        if not isinstance(value, yaml.ScalarNode):
            raise ConfigError(source, f"'{MLOPS_SECTION}.{PRODUCTION_KEY}' must be a version name")
        start, end = value.start_mark.index, value.end_mark.index
        space = " " if start == end and text[start - 1 : start] == ":" else ""  # `key:` alone
        return text[:start] + space + _scalar_text(version, value.style) + text[end:]
    if mlops.flow_style:
        closing = text.rfind("}", 0, mlops.end_mark.index)
        separator = ", " if mlops.value else ""
        return text[:closing] + f"{separator}{PRODUCTION_KEY}: {quoted}" + text[closing:]
    indent = " " * mlops.value[0][0].start_mark.column
    at = _end_of_line(text, _last_scalar_end(mlops))
    return text[:at] + f"{newline}{indent}{PRODUCTION_KEY}: {quoted}" + text[at:]

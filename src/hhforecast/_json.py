"""JSON read with a nesting limit: what every request body and state file is parsed with.

Python's parser recurses once per nesting level, so a document nested a few thousand levels deep
ends in a RecursionError (a traceback, or a 500 from the API) instead of a message. No file or
body hhforecast reads needs more than a handful of levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JSONDepthError", "json_depth_exceeds", "loads"]

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects accepted anywhere (hhforecast's files use ≤ 6)."""

_TOKENS_TEXT = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
_TOKENS_BYTES = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


class JSONDepthError(ValueError):
    """A JSON document nests arrays and objects deeper than the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"arrays and objects are nested more than {limit} levels deep")


def json_depth_exceeds(data: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in `data` nest deeper than `limit` (brackets in strings
    do not count)."""
    if isinstance(data, bytes):
        opening = data.count(b"[") + data.count(b"{")
        tokens = _TOKENS_BYTES.finditer(data)
        opens, closes = (b"[", b"{"), (b"]", b"}")
    else:
        opening = data.count("[") + data.count("{")
        tokens = _TOKENS_TEXT.finditer(data)  # type: ignore[assignment]
        opens, closes = ("[", "{"), ("]", "}")  # type: ignore[assignment]
    if opening <= limit:  # the common case costs two C-speed counts
        return False
    depth = 0
    for match in tokens:
        token = match.group()
        if token in opens:
            depth += 1
            if depth > limit:
                return True
        elif token in closes:
            depth -= 1
    return False


def loads(data: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, refusing documents nested deeper than `limit` with JSONDepthError."""
    if json_depth_exceeds(data, limit):
        raise JSONDepthError(limit)
    return json.loads(data)

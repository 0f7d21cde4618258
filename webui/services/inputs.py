"""Bounds on what users send: YAML typed in forms, JSON bodies of API calls.

YAML anchors and aliases are refused (a few bytes of aliases expand into billions of nodes), and
both YAML and JSON may nest at most MAX_DEPTH levels (deeper nesting exhausts the parsers' stack,
and no playbook variable needs it).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent, CollectionStartEvent

from webui.services.errors import Invalid

MAX_DEPTH = 32


class _TooDeep(yaml.YAMLError):
    pass


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader without aliases or anchors, and with nesting bounded to MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise ComposerError(
                None,
                None,
                "anchors and aliases are not accepted: write each value out",
                event.start_mark,
            )
        if getattr(event, "anchor", None) is not None:
            raise ComposerError(
                None,
                None,
                "anchors and aliases are not accepted: write each value out",
                event.start_mark,
            )
        nested = isinstance(event, CollectionStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _TooDeep(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


def load_yaml(text: str, field: str) -> Any:
    """A YAML document typed in a form field; Invalid says what is wrong and where."""
    if not text.strip():
        return None
    try:
        return yaml.load(text, Loader=BoundedLoader)
    except _TooDeep as exc:
        raise Invalid(f"{field} is {exc}", {field: [str(exc)]}) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None)
        detail = problem if problem and "alias" in problem else "not YAML"
        raise Invalid(
            f"{field} is not accepted: {detail}{where}", {field: [f"{detail}{where}"]}
        ) from None


def json_depth_error(body: bytes, limit: int = MAX_DEPTH) -> str | None:
    """Why a JSON body nests too deeply, or None; scans the bytes (strings skipped) without
    parsing, so that the parser never recurses that deep."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return f"the JSON body is nested deeper than {limit} levels"
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return None

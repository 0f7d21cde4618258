"""Namespace selection and renaming as mongorestore's flags do it.

``--nsInclude``/``--nsExclude`` take patterns where ``*`` matches any run of characters (``\\*``
a literal star); ``--nsFrom``/``--nsTo`` pairs rename, ``$name$`` in ``--nsFrom`` capturing
what ``$name$`` stands for in ``--nsTo`` (``--nsFrom 'app.$c$' --nsTo 'app_copy.$c$'``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\$")


class NamespaceError(ValueError):
    pass


def _pattern(text: str, variables: bool) -> re.Pattern:
    out, i = [], 0
    seen: set[str] = set()
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(re.escape(text[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "$" and variables:
            match = _VARIABLE.match(text, i)
            if not match:
                raise NamespaceError(f"{text!r}: a '$' that does not start a $variable$")
            name = match.group(1)
            if name in seen:
                raise NamespaceError(f"{text!r}: ${name}$ appears twice")
            seen.add(name)
            out.append(f"(?P<{name}>.*?)")
            i = match.end()
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _value(values: dict, found: re.Match) -> str:
    return values[found.group(1)]


@dataclass
class Selector:
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    rename_from: list[str] = field(default_factory=list)
    rename_to: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.rename_from) != len(self.rename_to):
            raise NamespaceError(
                f"--nsFrom and --nsTo come in pairs: {len(self.rename_from)} --nsFrom, "
                f"{len(self.rename_to)} --nsTo"
            )
        self._include = [_pattern(p, False) for p in self.include]
        self._exclude = [_pattern(p, False) for p in self.exclude]
        self._renames = []
        for source, target in zip(self.rename_from, self.rename_to):
            pattern = _pattern(source, True)
            unknown = set(_VARIABLE.findall(target)) - set(pattern.groupindex)
            if unknown:
                raise NamespaceError(
                    f"--nsTo {target!r} uses ${sorted(unknown)[0]}$, which --nsFrom {source!r} "
                    "does not define"
                )
            self._renames.append((pattern, target))

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude or self.rename_from)

    def selected(self, ns: str) -> bool:
        if self._include and not any(p.fullmatch(ns) for p in self._include):
            return False
        return not any(p.fullmatch(ns) for p in self._exclude)

    def target(self, ns: str) -> str:
        for pattern, target in self._renames:
            match = pattern.fullmatch(ns)
            if match:
                return _VARIABLE.sub(partial(_value, match.groupdict()), target)
        return ns

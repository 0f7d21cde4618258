"""The MongoDB version this build of the double impersonates.

``build-tarball`` bakes the version into ``_build.py`` inside the zipapp. Run from the source tree,
the version comes from ``MONGOD_DOUBLE_VERSION`` (default below), so tests can pick any release.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

DEFAULT_VERSION = "7.0.14"
VERSION_ENV = "MONGOD_DOUBLE_VERSION"
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")

# maxWireVersion per release series, from MongoDB's wire_version.h.
WIRE_VERSIONS = {(6, 0): 17, (7, 0): 21, (8, 0): 25}
# The release before each series (last LTS) and the rapid release just before it (last continuous).
PREVIOUS = {(6, 0): ("5.0", "5.3"), (7, 0): ("6.0", "6.3"), (8, 0): ("7.0", "7.3")}


@dataclass(frozen=True)
class Version:
    text: str
    major: int
    minor: int
    patch: int

    @property
    def series(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def fcv(self) -> str:
        """The feature compatibility version a new dbPath starts at."""
        return f"{self.major}.{self.minor}"

    @property
    def last_lts(self) -> str:
        return PREVIOUS[self.series][0]

    @property
    def last_continuous(self) -> str:
        return PREVIOUS[self.series][1]

    @property
    def startable_fcvs(self) -> tuple[str, ...]:
        """FCV documents this binary accepts at startup, in mongod's error-message order."""
        return (self.last_lts, self.last_continuous, self.fcv)

    @property
    def settable_fcvs(self) -> tuple[str, ...]:
        return (self.last_lts, self.fcv)

    @property
    def max_wire_version(self) -> int:
        return WIRE_VERSIONS[self.series]

    @property
    def git_version(self) -> str:
        """A stable 40-hex stand-in for the git commit (the double has no MongoDB commit)."""
        return hashlib.sha1(f"mongod-double {self.text}".encode()).hexdigest()

    @property
    def version_array(self) -> list[int]:
        return [self.major, self.minor, self.patch, 0]


def parse_version(text: str) -> Version:
    """Parse ``X.Y.Z`` for a supported series, or raise ValueError saying what is accepted."""
    match = VERSION_RE.match(text)
    if not match:
        raise ValueError(f"version {text!r} is not of the form X.Y.Z (for example 7.0.14)")
    major, minor, patch = (int(part) for part in match.groups())
    if (major, minor) not in WIRE_VERSIONS:
        supported = ", ".join(f"{a}.{b}.x" for a, b in WIRE_VERSIONS)
        raise ValueError(f"version {text} is not a supported release series ({supported})")
    return Version(text, major, minor, patch)


def current() -> Version:
    try:
        from mongod_double import _build  # written by build-tarball

        return parse_version(_build.VERSION)
    except ImportError:
        return parse_version(os.environ.get(VERSION_ENV, DEFAULT_VERSION))

# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""The path of a rolling upgrade: pure decisions, no I/O.

MongoDB's rules (release notes "Upgrade a Replica Set to 7.0 / 8.0", the
setFeatureCompatibilityVersion reference):

- a major release starts only on data files whose feature compatibility version (FCV) is the
  previous major's or its own: 6.0 -> 8.0 goes through 7.0, with the FCV raised to 7.0 before
  the 8.0 binaries start;
- the FCV is raised once every member runs the new major (``confirm: true`` from 7.0 on);
- a patch release of the same series replaces the binaries in one step, the FCV unchanged;
- binaries go back one major at most, and only while the FCV is still the older major's
  (from 7.0 on, downgrading binaries after the FCV changed needs MongoDB's support).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
FCV_RE = re.compile(r"^(\d+)\.(\d+)$")
# setFeatureCompatibilityVersion requires confirm: true from this release series on.
CONFIRM_FROM = (7, 0)


class UpgradeRefused(ValueError):
    """The target cannot be reached from the running deployment (the message says why)."""


@dataclass(frozen=True)
class Step:
    """One step of the plan: new binaries on some members, or a new FCV."""

    action: str  # "binaries", "fcv" or "restart" (a rolling restart, nothing upgraded)
    version: str  # a release (binaries) or a major.minor (fcv); empty for a restart
    members: tuple[str, ...] = ()  # binaries: the members that do not run it yet
    confirm: bool = False  # fcv: the command needs confirm: true

    def describe(self) -> str:
        if self.action == "binaries":
            return f"binaries {self.version} on {', '.join(self.members)}, one at a time"
        if self.action == "restart":
            return f"restart {', '.join(self.members)}, one at a time"
        return f"FCV {self.version}" + (" (confirm: true)" if self.confirm else "")

    def as_dict(self) -> dict:
        return {
            "action": self.action,
            "version": self.version,
            "members": list(self.members),
            "confirm": self.confirm,
            "description": self.describe(),
        }


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"steps": [s.as_dict() for s in self.steps], "notes": list(self.notes)}


def parse_release(text: str) -> tuple[int, int, int]:
    match = VERSION_RE.match(str(text).strip())
    if not match:
        raise UpgradeRefused(f"version {text!r} is not a release X.Y.Z (for example 8.0.4)")
    return tuple(int(part) for part in match.groups())  # type: ignore[return-value]


def parse_fcv(text: str) -> tuple[int, int]:
    match = FCV_RE.match(str(text).strip())
    if not match:
        raise UpgradeRefused(f"feature compatibility version {text!r} is not of the form X.Y")
    return int(match.group(1)), int(match.group(2))


def series_text(series: tuple[int, int]) -> str:
    return f"{series[0]}.{series[1]}"


def _major(series: tuple[int, int], target: str) -> tuple[int, int]:
    if series[1] != 0:
        raise UpgradeRefused(
            f"{target} is a rapid release ({series_text(series)}): upgrades go between major "
            "releases (X.0) and their patch releases"
        )
    return series


def plan_upgrade(
    members: dict[str, str],
    fcv: str,
    target: str,
    releases: dict[str, str] | None = None,
    fcv_mode: str = "now",
    fcv_target: str | None = None,
) -> Plan:
    """The steps from ``members`` (host -> running version) at ``fcv`` to ``target``.

    ``releases`` names the release to run for each major passed through (``{"7.0": "7.0.14"}``);
    ``fcv_mode`` "now" raises the FCV of the target's major at the end, "finalize" leaves it to a
    later run (the FCVs of the majors passed through are always raised: the next one needs it).
    ``fcv_target``: the FCV document's targetVersion, when an earlier change was interrupted.
    Raises UpgradeRefused with the reason when MongoDB does not allow the way.
    """
    if not members:
        raise UpgradeRefused("no member to upgrade")
    if fcv_mode not in ("now", "finalize"):
        raise UpgradeRefused(f"upgrade_fcv {fcv_mode!r} is not one of now, finalize")
    releases = releases or {}
    running = {host: parse_release(v) for host, v in members.items()}
    goal = parse_release(target)
    goal_series = _major(goal[:2], target)
    current_fcv = parse_fcv(fcv)
    low = min(v[:2] for v in running.values())
    high = max(v[:2] for v in running.values())
    plan = Plan()
    if high[0] - low[0] > 1:
        raise UpgradeRefused(
            f"members run {series_text(low)} and {series_text(high)}: more than one major apart, "
            "which MongoDB never allows in one set; bring them to one version first"
        )
    if fcv_target is not None:
        pending = parse_fcv(fcv_target)
        if pending < current_fcv or pending == current_fcv:
            raise UpgradeRefused(
                f"the FCV is being downgraded to {fcv_target} (an interrupted "
                "setFeatureCompatibilityVersion): finish it or set it back with "
                "whaleal.wap.mongodb_fcv before upgrading"
            )
        if pending > high:
            raise UpgradeRefused(f"the FCV document targets {fcv_target}, above every member")
        plan.steps.append(Step("fcv", fcv_target, confirm=pending >= CONFIRM_FROM))
        plan.notes.append(f"an interrupted FCV upgrade to {fcv_target} is finished first")
        current_fcv = pending
    if current_fcv > low:
        raise UpgradeRefused(
            f"FCV {fcv} is above the binaries of some members ({series_text(low)}): they could "
            "not have started on these data files; check the members' versions"
        )
    if low != high and current_fcv != low:
        raise UpgradeRefused(
            f"members run {series_text(low)} and {series_text(high)} with FCV {fcv}: a set in "
            f"the middle of an upgrade must be at FCV {series_text(low)}"
        )
    if current_fcv < (low[0] - 1, 0):
        raise UpgradeRefused(f"FCV {fcv} is more than one major behind the binaries")

    if goal_series < high or (goal_series == high and any(v > goal for v in running.values())):
        return _plan_downgrade(running, current_fcv, goal, target, plan)

    lagging = current_fcv < low
    if lagging and goal_series > low:
        plan.steps.append(Step("fcv", series_text(low), confirm=low >= CONFIRM_FROM))
        plan.notes.append(
            f"FCV {fcv} lags the binaries ({series_text(low)}): raised before the next major"
        )
    series = low
    while True:
        if series == goal_series:
            release = goal
        elif series == low:
            release = None  # the members already run a release of this major
        else:
            wanted = releases.get(series_text(series))
            if not wanted:
                raise UpgradeRefused(
                    f"{target} cannot start on data files of FCV {series_text(low)}: the way "
                    f"goes through {series_text(series)}; name its release (releases: "
                    f'{{"{series_text(series)}": "{series_text(series)}.N"}})'
                )
            release = parse_release(wanted)
            if release[:2] != series:
                raise UpgradeRefused(f"release {wanted} given for {series_text(series)}")
        if release is not None:
            behind = tuple(h for h, v in running.items() if v != release and v[:2] <= series)
            if behind:
                plan.steps.append(Step("binaries", ".".join(map(str, release)), behind))
        last = series == goal_series
        if series > low or (last and lagging):
            if not last or fcv_mode == "now":
                plan.steps.append(Step("fcv", series_text(series), confirm=series >= CONFIRM_FROM))
            else:
                plan.notes.append(
                    f"FCV stays {series_text((series[0] - 1, 0)) if series > low else fcv} "
                    f"(upgrade_fcv finalize): the binaries can still go back; run again with "
                    f"upgrade_fcv now to raise it to {series_text(series)}"
                )
        if last:
            break
        series = (series[0] + 1, 0)
    return plan


def _plan_downgrade(
    running: dict, fcv: tuple[int, int], goal: tuple, target: str, plan: Plan
) -> Plan:
    goal_series = goal[:2]
    high = max(v[:2] for v in running.values())
    if goal_series != high and goal_series != (high[0] - 1, 0):
        raise UpgradeRefused(
            f"{target} is more than one major below {series_text(high)}: binaries go back one "
            "major at most"
        )
    if fcv > goal_series:
        raise UpgradeRefused(
            f"{target} cannot start on data files of FCV {series_text(fcv)}: binaries go back "
            f"only while the FCV is still {series_text(goal_series)}, and from 7.0 on a downgrade "
            "after the FCV changed needs MongoDB's support"
        )
    behind = tuple(h for h, v in running.items() if v != goal)
    plan.steps.append(Step("binaries", target, behind))
    plan.notes.append(f"downgrade to {target}: FCV {series_text(fcv)} unchanged")
    return plan

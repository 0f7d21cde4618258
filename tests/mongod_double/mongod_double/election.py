"""Election decisions of protocol version 1, as pure functions (no I/O, no clock).

After MongoDB's "Replica Set Elections" page
(https://www.mongodb.com/docs/manual/core/replica-set-elections/): a member votes at most once
per term, only for a candidate of the same set whose term is not behind and whose oplog is at
least as up to date as its own; a candidate needs a strict majority of the voting members;
the election timeout (``electionTimeoutMillis``) gets a random offset of up to 15 %; a higher-
priority member that is caught up (within 2 s, ``priorityTakeoverFreshnessWindowSeconds``)
calls a priority takeover.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bson.timestamp import Timestamp

ELECTION_OFFSET_FRACTION = 0.15
FRESHNESS_WINDOW_SECS = 2


def optime_key(optime: dict | None) -> tuple[int, int, int]:
    """Order of optimes: term first, then timestamp (``{ts, t}``); none is the smallest."""
    if not optime:
        return (-1, 0, 0)
    ts = optime.get("ts") or Timestamp(0, 0)
    return (int(optime.get("t", -1)), ts.time, ts.inc)


@dataclass
class VoteRequest:
    set_name: str
    term: int
    candidate_index: int
    config_version: int
    config_term: int
    last_applied: dict | None
    dry_run: bool


@dataclass
class Voter:
    set_name: str
    term: int
    last_vote_term: int  # term of the last real (not dry-run) vote this member gave
    config_version: int
    config_term: int
    last_applied: dict | None
    is_arbiter: bool = False


def decide_vote(voter: Voter, request: VoteRequest) -> tuple[bool, str]:
    """(granted, reason) for one vote request."""
    if request.set_name != voter.set_name:
        return False, (
            f"candidate's set name ({request.set_name}) differs from mine ({voter.set_name})"
        )
    if request.term < voter.term:
        return False, (f"candidate's term ({request.term}) is lower than mine ({voter.term})")
    if (request.config_term, request.config_version) < (voter.config_term, voter.config_version):
        return False, (
            f"candidate's config with {{version: {request.config_version}, term: "
            f"{request.config_term}}} is older than mine with {{version: "
            f"{voter.config_version}, term: {voter.config_term}}}"
        )
    if not voter.is_arbiter and optime_key(request.last_applied) < optime_key(voter.last_applied):
        return False, "candidate's data is staler than mine"
    if not request.dry_run and voter.last_vote_term >= request.term:
        return False, (f"already voted for another candidate in this term ({voter.last_vote_term})")
    return True, ""


def won(votes: int, majority: int) -> bool:
    return votes >= majority


def election_timeout_with_offset(timeout_ms: int, rng: random.Random | None = None) -> float:
    """Seconds before a member without a primary calls an election."""
    rng = rng or random
    return (timeout_ms + rng.uniform(0, timeout_ms * ELECTION_OFFSET_FRACTION)) / 1000


def priority_takeover_rank(my_priority: float, others: list[float]) -> int:
    """How many electable members have a higher priority than mine (0: I am the highest)."""
    return sum(1 for p in others if p > my_priority)


def priority_takeover_delay(timeout_ms: int, rank: int) -> float:
    """Seconds a higher-priority secondary waits before taking over: 10 % of the election
    timeout per rank, so the highest-priority member goes first."""
    return (rank + 1) * timeout_ms * 0.1 / 1000


def should_take_over(
    my_priority: float,
    primary_priority: float,
    my_applied: dict | None,
    primary_applied: dict | None,
) -> bool:
    """A secondary with a higher priority than the primary's, caught up within the window."""
    if my_priority <= primary_priority or not my_applied or not primary_applied:
        return False
    mine, theirs = my_applied["ts"], primary_applied["ts"]
    return theirs.time - mine.time <= FRESHNESS_WINDOW_SECS


def sees_majority(visible_voters: int, majority: int) -> bool:
    """A primary that can reach fewer voting members (itself included) steps down."""
    return visible_voters >= majority

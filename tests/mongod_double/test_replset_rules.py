"""Pure replica set rules of the double: config validation, majorities, reconfig, votes.

Sources: https://www.mongodb.com/docs/manual/reference/replica-configuration/,
https://www.mongodb.com/docs/manual/reference/command/replSetGetStatus/ (majorityVoteCount,
writeMajorityCount), https://www.mongodb.com/docs/manual/reference/command/replSetReconfig/,
https://www.mongodb.com/docs/manual/core/replica-set-elections/,
https://www.mongodb.com/docs/manual/reference/write-concern/ (implicit default write concern).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from bson.timestamp import Timestamp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mongod_double import election, rsconfig
from mongod_double.errors import CommandError
from mongod_double.options import ServerOptions
from mongod_double.peers import client_kwargs
from mongod_double.replication.coordinator import ReplicationCoordinator
from mongod_double.replication.states import PRIMARY, SECONDARY
from mongod_double.role import Role
from mongod_double.storage import Storage
from mongod_double.version import parse_version


def config(*members: dict, version: int = 1) -> dict:
    return rsconfig.normalize(
        {
            "_id": "rs0",
            "version": version,
            "members": [
                {"_id": i, "host": f"10.0.0.{i + 1}:27017", **m} for i, m in enumerate(members)
            ],
        },
        "rs0",
    )


def code_of(call) -> int:
    with pytest.raises(CommandError) as info:
        call()
    return info.value.code


def test_normalize_fills_mongod_defaults():
    out = config({}, {"priority": 2}, {"arbiterOnly": True})
    first, second, arbiter = out["members"]
    assert first == {
        "_id": 0,
        "host": "10.0.0.1:27017",
        "arbiterOnly": False,
        "buildIndexes": True,
        "hidden": False,
        "priority": 1,
        "tags": {},
        "secondaryDelaySecs": 0,
        "votes": 1,
    }
    assert second["priority"] == 2 and arbiter["priority"] == 0 and arbiter["votes"] == 1
    assert out["protocolVersion"] == 1 and out["writeConcernMajorityJournalDefault"] is True
    settings = out["settings"]
    assert settings["heartbeatIntervalMillis"] == 2000
    assert settings["electionTimeoutMillis"] == 10000
    assert "replicaSetId" in settings


@pytest.mark.parametrize(
    "members",
    [
        [{"hidden": True}],  # hidden needs priority 0
        [{}, {"votes": 0}],  # non-voting needs priority 0
        [{}, {"arbiterOnly": True, "priority": 1}],
        [{"priority": 0}],  # no electable member
        [{"votes": 2}],
        [{"priority": 1001}],
        [{"unknownField": 1}],
        [{}] * 8,  # 8 voting members
    ],
)
def test_invalid_configs_are_refused_with_93(members):
    assert code_of(lambda: config(*members)) == 93


def test_duplicate_hosts_and_ids_and_wrong_set_name_are_refused():
    doc = {"_id": "rs0", "members": [{"_id": 0, "host": "a:1"}, {"_id": 0, "host": "b:1"}]}
    assert code_of(lambda: rsconfig.normalize(doc, "rs0")) == 93
    doc = {"_id": "rs0", "members": [{"_id": 0, "host": "a:1"}, {"_id": 1, "host": "a:1"}]}
    assert code_of(lambda: rsconfig.normalize(doc, "rs0")) == 93
    doc = {"_id": "other", "members": [{"_id": 0, "host": "a:1"}]}
    assert code_of(lambda: rsconfig.normalize(doc, "rs0")) == 93


@pytest.mark.parametrize(
    ("members", "vote_majority", "write_majority", "default_w"),
    [
        ([{}], 1, 1, "majority"),
        ([{}, {}, {}], 2, 2, "majority"),
        ([{}, {}, {"arbiterOnly": True}], 2, 2, 1),  # PSA: implicit default w: 1
        ([{}, {}, {}, {}, {"arbiterOnly": True}], 3, 3, "majority"),
        ([{}, {}, {"votes": 0, "priority": 0}], 2, 2, "majority"),
        ([{}, {}, {}, {}, {}], 3, 3, "majority"),
    ],
)
def test_majorities(members, vote_majority, write_majority, default_w):
    out = config(*members)
    assert rsconfig.majority_vote_count(out) == vote_majority
    assert rsconfig.write_majority_count(out) == write_majority
    assert rsconfig.implicit_default_w(out) == default_w


def test_reconfig_rules():
    old = config({}, {}, {})
    same = dict(old)
    assert code_of(lambda: rsconfig.check_reconfig(old, same, force=False)) == 103
    newer = rsconfig.with_version(old, 2, 1)
    newer["members"][2].update(votes=0, priority=0)
    rsconfig.check_reconfig(old, newer, force=False)  # one voting change: fine
    two = rsconfig.with_version(old, 2, 1)
    two["members"][1].update(votes=0, priority=0)
    two["members"][2].update(votes=0, priority=0)
    assert rsconfig.voting_changes(old, two) == 2
    assert code_of(lambda: rsconfig.check_reconfig(old, two, force=False)) == 103
    rsconfig.check_reconfig(old, two, force=True)  # force skips the version and vote rules
    added = rsconfig.with_version(old, 2, 1)
    added["members"] += [
        {**added["members"][0], "_id": 3, "host": "10.0.0.9:27017"},
        {**added["members"][0], "_id": 4, "host": "10.0.0.10:27017"},
    ]
    assert code_of(lambda: rsconfig.check_reconfig(old, added, force=False)) == 103
    renamed = rsconfig.with_version(old, 2, 1)
    renamed["_id"] = "rs1"
    assert code_of(lambda: rsconfig.check_reconfig(old, renamed, force=True)) == 103


def _voter(**kw) -> election.Voter:
    base = {
        "set_name": "rs0",
        "term": 5,
        "last_vote_term": 4,
        "config_version": 3,
        "config_term": 5,
        "last_applied": {"ts": Timestamp(100, 1), "t": 5},
    }
    return election.Voter(**{**base, **kw})


def _request(**kw) -> election.VoteRequest:
    base = {
        "set_name": "rs0",
        "term": 6,
        "candidate_index": 1,
        "config_version": 3,
        "config_term": 5,
        "last_applied": {"ts": Timestamp(100, 1), "t": 5},
        "dry_run": False,
    }
    return election.VoteRequest(**{**base, **kw})


def test_vote_decisions():
    assert election.decide_vote(_voter(), _request()) == (True, "")
    assert not election.decide_vote(_voter(), _request(term=4))[0]  # behind my term
    assert not election.decide_vote(_voter(), _request(set_name="x"))[0]
    stale = {"ts": Timestamp(99, 9), "t": 5}
    assert not election.decide_vote(_voter(), _request(last_applied=stale))[0]
    older_term = {"ts": Timestamp(200, 1), "t": 4}  # later timestamp, older term: staler
    assert not election.decide_vote(_voter(), _request(last_applied=older_term))[0]
    assert not election.decide_vote(_voter(), _request(config_version=2))[0]
    assert not election.decide_vote(_voter(last_vote_term=6), _request())[0]  # one vote a term
    assert election.decide_vote(_voter(last_vote_term=6), _request(dry_run=True))[0]
    assert election.decide_vote(_voter(is_arbiter=True), _request(last_applied=stale))[0]


def test_election_timing_and_takeover():
    rng = random.Random(1)
    for _ in range(100):
        assert 10.0 <= election.election_timeout_with_offset(10000, rng) <= 11.5
    assert election.priority_takeover_rank(5, [1, 1]) == 0
    assert election.priority_takeover_rank(2, [5, 1]) == 1
    assert election.priority_takeover_delay(10000, 0) == pytest.approx(1.0)
    mine = {"ts": Timestamp(100, 1), "t": 3}
    assert election.should_take_over(5, 1, mine, {"ts": Timestamp(102, 1), "t": 3})
    assert not election.should_take_over(5, 1, mine, {"ts": Timestamp(103, 1), "t": 3})
    assert not election.should_take_over(1, 1, mine, mine)
    assert election.sees_majority(2, 2) and not election.sees_majority(1, 2)


def test_a_primary_that_sees_a_newer_term_logs_nothing_in_it(tmp_path):
    # mongod adopts a newer term and steps down as one step: a write that lands while a vote
    # request or heartbeat carries the new term in is refused, never logged with the new term
    # (the new primary's entries are in that term, and two entries of one term at one timestamp
    # cannot be told apart by a rollback: a soak once lost a majority write that way).
    storage = Storage(str(tmp_path), parse_version("7.0.14"))
    repl = ReplicationCoordinator(Role.REPLICA_SET_MEMBER, "rs0", storage, 27017)
    repl.self_host = "10.0.0.1:27017"
    repl.config = config({}, {})
    storage.oplog_hook = repl
    assert repl.become_primary()
    insert = {"op": "i", "ns": "app.docs", "o": {"_id": 1}}
    assert repl.entry_for(insert)["t"] == 1
    in_the_window = []
    step_down = repl._step_down_locked

    def write_then_step_down(reason):
        in_the_window.append(code_of(lambda: repl.entry_for(insert)))
        step_down(reason)

    repl._step_down_locked = write_then_step_down
    with repl.mutex:
        repl._update_term(2)
    assert in_the_window == [10107] and repl.state == SECONDARY and repl.term == 2
    assert code_of(lambda: repl.entry_for(insert)) == 10107
    assert repl.become_primary() and repl.state == PRIMARY  # a later election, a term its own
    assert repl.entry_for(insert)["t"] == 3


def test_peer_client_options_follow_keyfile_and_tls(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text("abc def\n  ghi\n")
    options = ServerOptions(
        {
            "security": {"keyFile": str(keyfile)},
            "net": {"tls": {"mode": "requireTLS", "certificateKeyFile": "/c.pem", "CAFile": "/ca"}},
        },
        [],
    )
    kwargs = client_kwargs(options)
    assert kwargs["directConnection"] is True
    assert kwargs["username"] == "__system" and kwargs["password"] == "abcdefghi"
    assert kwargs["authSource"] == "local" and kwargs["authMechanism"] == "SCRAM-SHA-256"
    assert kwargs["tls"] is True and kwargs["tlsCertificateKeyFile"] == "/c.pem"
    assert kwargs["tlsCAFile"] == "/ca"
    plain = client_kwargs(ServerOptions({}, []))
    assert "username" not in plain and "tls" not in plain

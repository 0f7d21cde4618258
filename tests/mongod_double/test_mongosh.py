"""MongoDB's own shell against the double: mongosh 2.x (npm, installed by
scripts/install.d/40-mongosh.sh into .cache/mongosh) runs rs.initiate(), rs.status(), rs.conf(),
insertOne, find and adminCommand on a one-member replica set.

Source: https://www.mongodb.com/docs/mongodb-shell/reference/methods/ (rs.initiate, rs.status,
rs.conf, db.collection.insertOne, db.collection.find, db.adminCommand).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MONGOSH = REPO / ".cache" / "mongosh" / "node_modules" / ".bin" / "mongosh"
SCRIPT = """
const initiated = rs.initiate();
let tries = 0;
while (!db.hello().isWritablePrimary && tries++ < 100) sleep(100);
const status = rs.status();
const conf = rs.conf();
const inserted = db.c.insertOne({a: 1});
const found = db.c.find({}, {_id: 0}).toArray();
const ping = db.adminCommand({ping: 1});
let missing = null;
try { db.adminCommand({noSuchCommand: 1}); } catch (e) { missing = e; }
print(JSON.stringify({
  initiated: initiated.ok,
  set: status.set, myState: status.myState, members: status.members.map(m => m.stateStr),
  confId: conf._id, confMembers: conf.members.length,
  acknowledged: inserted.acknowledged, found: found,
  ping: ping.ok, missing: [missing.code, missing.codeName],
}));
"""


def test_mongosh_drives_a_one_member_replica_set(launcher, tmp_path):
    if not MONGOSH.exists():
        pytest.fail("mongosh is not installed: run scripts/install (install.d/40-mongosh.sh)")
    node = launcher.start("--replSet", "rs0")
    script = tmp_path / "scenario.js"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [str(MONGOSH), f"mongodb://127.0.0.1:{node.port}/test?directConnection=true",
         "--quiet", "--norc", "--file", str(script)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "DO_NOT_TRACK": "1", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {
        "initiated": 1,
        "set": "rs0",
        "myState": 1,
        "members": ["PRIMARY"],
        "confId": "rs0",
        "confMembers": 1,
        "acknowledged": True,
        "found": [{"a": 1}],
        "ping": 1,
        "missing": [59, "CommandNotFound"],
    }

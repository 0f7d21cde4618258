"""Replication: config, member states, heartbeats, elections, oplog fetching, write concern.

One :class:`ReplicationCoordinator` per server (:mod:`.coordinator`), its concerns in one
module each: :mod:`.config`, :mod:`.heartbeats`, :mod:`.elections`, :mod:`.fetcher`,
:mod:`.initial_sync`, :mod:`.rollback`, :mod:`.write_concern`, :mod:`.status`, each a mixin
of the coordinator over the state it holds. It loads the config from ``local.system.replset``
and the last vote from ``local.replset.election``, and, once the server serves, runs three kinds
of threads:

- one heartbeat thread per other member: ``replSetHeartbeat`` every ``heartbeatIntervalMillis``
  over the wire (:mod:`mongod_double.peers`); replies carry state, term, optimes, config
  version, and the config itself when the asker's is older, which is how new configs spread;
- the ticker (every 100 ms): a secondary without a primary for ``electionTimeoutMillis`` (plus a
  random offset of up to 15 %) calls an election, a caught-up higher-priority secondary calls a
  priority takeover, a primary that cannot see a majority of voters steps down;
- the oplog fetcher: a secondary tails its sync source's ``local.oplog.rs`` with a tailable
  awaitData cursor, applies each entry through ``Storage.apply(op, replicated=entry)`` (keeping
  the fetched ``ts``/``t``) and reports its position with ``replSetUpdatePosition``. A new
  member first clones the data (initial sync, STARTUP2); a member that fell off its source's
  oplog says RECOVERING ("too stale"); one whose last entries are not on the source rolls them
  back to the common point (ROLLBACK, :mod:`.rollback`).

Elections follow protocol version 1 (:mod:`mongod_double.election`): dry run, then a real
vote in ``term + 1`` (``replSetRequestVotes``), one vote per term persisted, majority of the
voting members. Lock order: ``storage.lock`` before ``mutex``; code under ``storage.lock`` (the
oplog hook) never takes ``mutex``.
"""

from mongod_double.replication.coordinator import ReplicationCoordinator
from mongod_double.replication.states import NOT_SECONDARY, PRIMARY, STATE_CODES

__all__ = ["NOT_SECONDARY", "PRIMARY", "STATE_CODES", "ReplicationCoordinator"]

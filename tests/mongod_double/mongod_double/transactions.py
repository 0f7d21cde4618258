"""Multi-document transactions on a replica set primary, as MongoDB 4.2+ runs them.

From https://www.mongodb.com/docs/manual/core/transactions/ ("Transactions and Operations",
"Production Considerations"), the commitTransaction / abortTransaction command pages and the
oplog's transaction entries: a transaction starts with the first command carrying ``lsid``,
``txnNumber``, ``autocommit: false`` and ``startTransaction: true``; later statements carry the
same ``lsid``/``txnNumber`` and ``autocommit: false``. It reads a snapshot taken at its first
statement plus its own writes; no one else sees them until ``commitTransaction`` writes them as
ONE oplog entry ``{lsid: {id, uid}, txnNumber, op: "c", ns: "admin.$cmd", o: {applyOps: [...]},
prevOpTime: {ts: Timestamp(0, 0), t: -1}}`` (secondaries apply it whole, under their storage
lock), or, past 16 MB or ``maxNumberOfTransactionOperationsInSingleOplogEntry`` operations,
``partialTxn: true`` entries each naming the previous one in ``prevOpTime`` and a last one with
``count`` (the operations of them all), which applies them all; ``abortTransaction`` drops them.
Errors as mongod gives them: NoSuchTransaction (251, labelled TransientTransactionError),
TransactionTooOld (225), WriteConflict (112, transient) when two transactions write one document
or the document changed since the snapshot, an operation not allowed in a transaction refused
(OperationNotSupportedInTransaction, 263). A statement's error aborts the transaction, as
mongod's does.

How: the transaction's statements run, by the ordinary command handlers, against a private
:class:`~mongod_double.storage.Storage` holding a copy of the user databases (the snapshot); its
writes are recorded rather than logged, and committed through the real write path, every entry
under one hold of the storage lock. Not modelled: a write outside a transaction to a document a
transaction holds does not wait for the transaction (mongod makes it wait); the commit then
fails with WriteConflict instead. Prepared transactions (sharded clusters' two-phase commit) are
not. Retryable writes (``lsid`` + ``txnNumber`` without ``autocommit``) never come here.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
import weakref
from dataclasses import dataclass, field

import bson
from bson.binary import Binary
from bson.int64 import Int64
from bson.timestamp import Timestamp

from mongod_double.errors import CODE_NAMES, ILLEGAL_OPERATION, INVALID_OPTIONS, CommandError
from mongod_double.storage import CODEC, CollectionMeta, Storage, key_query, split_ns

NO_SUCH_TRANSACTION = 251
TRANSACTION_TOO_OLD = 225
WRITE_CONFLICT = 112
NOT_SUPPORTED_IN_TRANSACTION = 263
TRANSACTION_COMMITTED = 256
CONFLICTING_OPERATION = 117
CODE_NAMES.update({
    NO_SUCH_TRANSACTION: "NoSuchTransaction",
    TRANSACTION_TOO_OLD: "TransactionTooOld",
    WRITE_CONFLICT: "WriteConflict",
    NOT_SUPPORTED_IN_TRANSACTION: "OperationNotSupportedInTransaction",
    TRANSACTION_COMMITTED: "TransactionCommitted",
})  # fmt: skip
TRANSIENT = "TransientTransactionError"
LIFETIME_SECONDS = 60  # transactionLifetimeLimitSeconds' default
MAX_ENTRY_BYTES = 16 * 1024 * 1024 - 16 * 1024
OPS_PER_ENTRY = "maxNumberOfTransactionOperationsInSingleOplogEntry"
# Commands a transaction may run (MongoDB 4.4+: create and createIndexes too).
ALLOWED = frozenset({
    "find", "getMore", "killCursors", "insert", "update", "delete", "findAndModify",
    "aggregate", "distinct", "create", "createIndexes",
})  # fmt: skip
TERMINAL = frozenset({"commitTransaction", "abortTransaction"})
RESERVED_DBS = ("admin", "config", "local")
WRITE_CONFLICT_MESSAGE = (
    "WriteConflict error: this operation conflicted with another operation. Please retry your "
    "operation or multi-document transaction."
)


def is_transactional(body: dict) -> bool:
    return "autocommit" in body or "startTransaction" in body


def _key(value: object) -> bytes:
    return bson.encode({"k": value}, codec_options=CODEC)


class _Recorder:
    """The private storage's oplog hook: records each write instead of logging it, after the
    write-conflict checks."""

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn

    def entry_for(self, op: dict) -> None:
        self.txn.before_write(op)
        self.txn.ops.append(copy.deepcopy(op))

    def logged(self, entry: dict) -> None:  # never called: entry_for returns None
        raise AssertionError(entry)


class TransactionStorage(Storage):
    """A private copy of the user databases; writes are recorded, never journaled or logged."""

    def _journal(self, op: dict, entry: dict | None = None) -> None:
        self.seq += 1

    def checkpoint(self) -> None:
        return None

    def sync(self) -> None:
        return None


@dataclass
class Transaction:
    sessions: Sessions
    number: int
    lsid: dict
    storage: TransactionStorage
    started: float = field(default_factory=time.monotonic)
    ops: list[dict] = field(default_factory=list)
    # (ns, _id key) -> the document as the snapshot had it (None: none), for every one written
    originals: dict[tuple[str, bytes], dict | None] = field(default_factory=dict)
    state: str = "in progress"  # "committed", "aborted"
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.started > LIFETIME_SECONDS

    def before_write(self, op: dict) -> None:
        """A write about to change the private copy: refused on a capped collection, and a
        WriteConflict when another open transaction wrote the document or it changed since the
        snapshot."""
        real = self.sessions.storage
        ns = op["ns"]
        if ns in real.capped:
            raise CommandError(
                NOT_SUPPORTED_IN_TRANSACTION,
                f"Collection '{ns}' is a capped collection. Writes in transactions are not "
                "allowed on capped collections.",
            )
        if op["op"] not in ("i", "u", "d"):
            return
        _id = (op["o2"] if op["op"] == "u" else op["o"])["_id"]
        target = (ns, _key(_id))
        if target in self.originals:
            return
        self.sessions.hold(self, target)
        before = _current(self.storage, ns, _id)
        self.originals[target] = before
        with real.lock:
            if _current(real, ns, _id) != before:
                raise CommandError(WRITE_CONFLICT, WRITE_CONFLICT_MESSAGE)


def _current(storage: Storage, ns: str, _id: object) -> dict | None:
    if ns not in storage.catalog:
        return None
    return storage.collection(ns).find_one({"_id": _id})


@dataclass
class Session:
    highest: int = -1
    txn: Transaction | None = None


class Sessions:
    """Every logical session's transaction on one mongod, and the documents they hold."""

    def __init__(self, server) -> None:
        self.server = server
        self.mutex = threading.Lock()
        self.sessions: dict[bytes, Session] = {}
        self.held: dict[tuple[str, bytes], Transaction] = {}
        # serverStatus' transactions section
        self.counts = {"totalStarted": 0, "totalCommitted": 0, "totalAborted": 0, "active": 0}

    def status(self) -> dict[str, int]:
        """serverStatus' transaction counts (open: started and not ended; active: running a
        statement now)."""
        with self.mutex:
            open_ = sum(1 for s in self.sessions.values()
                        if s.txn is not None and s.txn.state == "in progress")  # fmt: skip
            counts = dict(self.counts)
        active = counts.pop("active")
        return {**counts, "currentOpen": open_, "currentActive": active,
                "currentInactive": max(0, open_ - active)}  # fmt: skip

    def count(self, name: str, by: int = 1) -> None:
        with self.mutex:
            self.counts[name] += by

    @property
    def storage(self) -> Storage:
        return self.server.storage

    def session(self, body: dict) -> tuple[Session, int]:
        lsid = body.get("lsid")
        number = body.get("txnNumber")
        if not isinstance(lsid, dict) or "id" not in lsid:
            raise CommandError(
                INVALID_OPTIONS, "Transaction number requires a session ID to also be specified"
            )
        if number is None:
            raise CommandError(
                INVALID_OPTIONS,
                "'autocommit' field requires a transaction number to also be specified",
            )
        with self.mutex:
            return self.sessions.setdefault(_key(lsid["id"]), Session()), int(number)

    def hold(self, txn: Transaction, target: tuple[str, bytes]) -> None:
        with self.mutex:
            holder = self.held.get(target)
            if holder is not None and holder is not txn and holder.state == "in progress":
                if not holder.expired:
                    raise CommandError(WRITE_CONFLICT, WRITE_CONFLICT_MESSAGE)
                holder.state = "aborted"
                self.counts["totalAborted"] += 1
            self.held[target] = txn

    def release(self, txn: Transaction) -> None:
        with self.mutex:
            for target in list(txn.originals):
                if self.held.get(target) is txn:
                    del self.held[target]

    def abort(self, txn: Transaction) -> None:
        with txn.lock:
            if txn.state == "in progress":
                self.count("totalAborted")
            txn.state = "aborted"
            self.release(txn)
            txn.storage = None  # its writes are dropped with the copy

    # -- statements ----------------------------------------------------------------------

    def statement(self, name: str, db: str, body: dict) -> Transaction:
        """The transaction a statement belongs to: started or continued, or refused."""
        if body.get("autocommit") is not False:
            raise CommandError(INVALID_OPTIONS, "autocommit field can only be specified as false")
        session, number = self.session(body)
        if "startTransaction" in body:
            if body["startTransaction"] is not True:
                raise CommandError(
                    INVALID_OPTIONS, "startTransaction field can only be specified as true"
                )
            txn = self._start(session, number, body["lsid"], body)
        else:
            txn = self._live(session, number, "continue")
            if "readConcern" in body:
                self.abort(txn)
                raise CommandError(
                    INVALID_OPTIONS,
                    "Only the first command in a transaction may specify a readConcern",
                )
        try:
            _allowed(name, db, body, self.storage)
        except CommandError:
            self.abort(txn)  # a failed statement aborts its transaction
            raise
        return txn

    def _start(self, session: Session, number: int, lsid: dict, body: dict) -> Transaction:
        if number < session.highest:
            raise CommandError(
                TRANSACTION_TOO_OLD,
                f"Cannot start transaction {number} on session {_shown(lsid)} because a newer "
                f"transaction {session.highest} has already started.",
            )
        if number == session.highest:
            raise CommandError(
                CONFLICTING_OPERATION,
                "Only servers in a sharded cluster can start a new transaction at the active "
                "transaction number",
            )
        level = (body.get("readConcern") or {}).get("level", "local")
        if level not in ("local", "majority", "snapshot"):
            raise CommandError(
                INVALID_OPTIONS,
                f"The readConcern level must be either 'snapshot', 'majority' or 'local' in a "
                f"transaction, not '{level}'",
            )
        if session.txn is not None and session.txn.state == "in progress":
            self.abort(session.txn)
        session.highest = number
        txn = Transaction(self, number, lsid, snapshot(self.storage))
        self.count("totalStarted")
        txn.storage.oplog_hook = _Recorder(txn)
        session.txn = txn
        return txn

    def _live(self, session: Session, number: int, verb: str) -> Transaction:
        if number < session.highest:
            raise CommandError(
                TRANSACTION_TOO_OLD,
                f"Cannot {verb} transaction {number} on session because a newer transaction "
                f"{session.highest} has already started.",
            )
        txn = session.txn
        if txn is not None and txn.number == number and txn.state == "in progress":
            if txn.expired:
                self.abort(txn)
            else:
                return txn
        if txn is not None and txn.number == number and txn.state == "aborted":
            raise no_such_transaction(f"Transaction {number} has been aborted.")
        raise no_such_transaction(
            f"Given transaction number {number} does not match any in-progress transactions. "
            f"The active transaction number is {session.highest}"
        )

    # -- commit and abort ----------------------------------------------------------------

    def commit(self, body: dict, user: str = "") -> None:
        """``user``: the connection's user as ``name@db`` ("" without one), whose SHA-256 is
        the ``uid`` mongod puts in the entry's ``lsid``."""
        session, number = self.session(body)
        txn = session.txn
        if txn is not None and txn.number == number and txn.state == "committed":
            return  # a retried commit
        txn = self._live(session, number, "commit")
        with txn.lock:
            try:
                self._write(txn, body, user)
            except CommandError:
                self.abort(txn)
                raise
            txn.state = "committed"
            self.count("totalCommitted")
            self.release(txn)
            txn.storage = None  # the copy is no longer needed

    def _write(self, txn: Transaction, body: dict, user: str) -> None:
        real = self.storage
        if not txn.ops:
            return  # a read-only transaction writes no entry
        applied = [{k: op[k] for k in ("op", "ns", "ui", "o", "o2") if k in op} for op in txn.ops]
        chunks = _chunks(applied, self.server.parameters.get(OPS_PER_ENTRY))
        lsid = {"id": body["lsid"]["id"], "uid": Binary(hashlib.sha256(user.encode()).digest())}
        with real.lock:
            for (ns, key), before in txn.originals.items():
                _id = bson.decode(key, CODEC)["k"]
                if _current(real, ns, _id) != before or _unique_clash(real, txn, ns, _id):
                    raise CommandError(
                        WRITE_CONFLICT, WRITE_CONFLICT_MESSAGE, errorLabels=[TRANSIENT]
                    )
            previous = {"ts": Timestamp(0, 0), "t": Int64(-1)}
            for position, chunk in enumerate(chunks):
                o: dict = {"applyOps": chunk}
                if position < len(chunks) - 1:
                    o["partialTxn"] = True
                elif len(chunks) > 1:
                    o["count"] = Int64(len(applied))
                number = Int64(txn.number)
                entry = real.apply({"op": "c", "ns": "admin.$cmd", "o": o, "lsid": lsid,
                                    "txnNumber": number, "prevOpTime": previous})  # fmt: skip
                previous = {"ts": entry["ts"], "t": entry["t"]}

    def abort_command(self, body: dict) -> None:
        session, number = self.session(body)
        txn = session.txn
        if txn is not None and txn.number == number and txn.state == "committed":
            raise CommandError(TRANSACTION_COMMITTED, f"Transaction {number} has been committed.")
        txn = self._live(session, number, "abort")
        self.abort(txn)


def _chunks(ops: list[dict], per_entry: int) -> list[list[dict]]:
    """The transaction's operations cut into applyOps entries: at most ``per_entry`` operations
    and 16 MB each, as mongod 4.2+ cuts a large transaction into partialTxn entries."""
    chunks: list[list[dict]] = [[]]
    size = 0
    for op in ops:
        op_size = len(bson.encode(op, codec_options=CODEC))
        if chunks[-1] and (len(chunks[-1]) >= per_entry or size + op_size > MAX_ENTRY_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(op)
        size += op_size
    return chunks


def _unique_clash(real: Storage, txn: Transaction, ns: str, _id: object) -> bool:
    """Does a unique index of ``ns`` hold the key of the document the transaction leaves, for
    a document it did not write (one another writer added since the snapshot)? Checked before
    the commit changes anything, so that its entry is applied whole or not at all."""
    final = _current(txn.storage, ns, _id)
    if final is None or ns not in real.catalog:
        return False
    for spec in real.catalog[ns].indexes:
        if not spec.get("unique") or spec.get("sparse") or "partialFilterExpression" in spec:
            continue
        for other in real.collection(ns).find(key_query(spec, final), {"_id": 1}):
            if other["_id"] != _id and (ns, _key(other["_id"])) not in txn.originals:
                return True
    return False


def _allowed(name: str, db: str, body: dict, real: Storage) -> None:
    """Refuse what a transaction may not run (OperationNotSupportedInTransaction)."""
    if name not in ALLOWED:
        raise CommandError(
            NOT_SUPPORTED_IN_TRANSACTION,
            f"Cannot run '{name}' in a multi-document transaction. Please see "
            "http://dochub.mongodb.org/core/transaction-count for a recommended alternative."
            if name == "count"
            else f"Cannot run '{name}' in a multi-document transaction.",
        )
    if db in RESERVED_DBS:
        raise CommandError(
            NOT_SUPPORTED_IN_TRANSACTION,
            f"Cannot run command against the '{db}' database in a transaction.",
        )
    if name == "createIndexes" and real.exists(f"{db}.{body.get(name)}"):
        raise CommandError(
            NOT_SUPPORTED_IN_TRANSACTION,
            f"Cannot create new indexes on existing collection {db}.{body.get(name)} in a "
            "multi-document transaction.",
        )
    if name == "create" and body.get("capped"):
        raise CommandError(
            NOT_SUPPORTED_IN_TRANSACTION,
            "Cannot create a capped collection in a multi-document transaction.",
        )
    for stage in body.get("pipeline") or [] if name == "aggregate" else []:
        writes = {"$out", "$merge"} & set(stage if isinstance(stage, dict) else ())
        if writes:
            raise CommandError(
                NOT_SUPPORTED_IN_TRANSACTION, f"{writes.pop()} cannot be used in a transaction"
            )
    if "writeConcern" in body:
        raise CommandError(
            INVALID_OPTIONS, "writeConcern is not allowed within a multi-statement transaction"
        )


def no_such_transaction(message: str) -> CommandError:
    return CommandError(NO_SUCH_TRANSACTION, message, errorLabels=[TRANSIENT])


def _shown(lsid: dict) -> str:
    value = lsid.get("id")
    return str(value.as_uuid()) if hasattr(value, "as_uuid") else repr(value)


def snapshot(real: Storage) -> TransactionStorage:
    """A private copy of every user database (not admin, config, local; no capped ones). The
    engine's store of each collection (its documents by _id) is copied whole: inserting the
    documents one by one checked each against the store (10,000 documents: a second per
    transaction, now 0.1 s)."""
    copy_ = TransactionStorage(real.dbpath, real.version)
    with real.lock:
        for ns, meta in real.catalog.items():
            if split_ns(ns)[0] in RESERVED_DBS or ns in real.capped:
                continue
            copy_._create(ns, CollectionMeta(meta.uuid, dict(meta.options), list(meta.indexes)))
            stored = real.collection(ns)._store._documents
            copy_.collection(ns)._store._documents = copy.deepcopy(stored)
    return copy_


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SESSIONS_LOCK = threading.Lock()


def sessions_of(server) -> Sessions:
    with _SESSIONS_LOCK:
        found = _SESSIONS.get(server)
        if found is None:
            found = _SESSIONS[server] = Sessions(server)
        return found


class _InTransaction:
    """The server as a transaction's statement sees it: its storage is the transaction's."""

    def __init__(self, server, storage: TransactionStorage) -> None:
        self._server = server
        self.storage = storage

    def __getattr__(self, name: str):
        return getattr(self._server, name)


def execute(server, spec, inv) -> dict:
    """Run one command of a transaction (the dispatcher's hook for commands carrying
    ``autocommit``): the statement against the transaction's copy, or commit/abort."""
    if server.replication.config is None:
        raise CommandError(
            ILLEGAL_OPERATION,
            "Transaction numbers are only allowed on a replica set member or mongos",
        )
    sessions = sessions_of(server)
    body = inv.body
    if spec.name in TERMINAL:
        try:
            return server.execute(spec, inv)
        except CommandError as exc:
            _label(exc, commit=True)
            raise
    txn = sessions.statement(spec.name, inv.db, body)
    inv.body = {k: v for k, v in body.items() if k not in ("autocommit", "startTransaction")}
    inv.body.pop("readConcern", None)
    with txn.lock:
        if txn.state != "in progress":
            raise no_such_transaction(f"Transaction {txn.number} has been aborted.")
        inv.server = _InTransaction(server, txn.storage)
        sessions.count("active")
        try:
            reply = server.execute(spec, inv)
        except CommandError as exc:
            sessions.abort(txn)
            _label(exc, commit=False)
            raise
        except Exception:
            sessions.abort(txn)
            raise
        finally:
            inv.server = server
            sessions.count("active", -1)
        errors = reply.get("writeErrors")
        if errors:  # in a transaction the first write error fails the whole command
            sessions.abort(txn)
            first = {k: v for k, v in errors[0].items() if k not in ("index", "code", "errmsg")}
            exc = CommandError(errors[0]["code"], errors[0]["errmsg"], **first)
            _label(exc, commit=False)
            raise exc
    return reply


def _label(exc: CommandError, commit: bool) -> None:
    transient = exc.code == WRITE_CONFLICT or exc.code == NO_SUCH_TRANSACTION
    if transient and "errorLabels" not in exc.extra:
        exc.extra["errorLabels"] = [TRANSIENT]

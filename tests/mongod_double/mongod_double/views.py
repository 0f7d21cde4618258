"""Views, as mongod keeps them: one document per view in its database's ``system.views``
collection, ``{_id: "<db>.<view>", viewOn, pipeline}`` (only the simple collation, the
engine's, which is not recorded).

Creating a view inserts that document (the first one creates ``system.views``), ``collMod``
replaces it and ``drop`` deletes it, each through the ordinary write path: the oplog shows an
insert, update or delete on ``<db>.system.views`` (as mongod's does: the catalogue writes them;
SERVER-63305, TOOLS-4426), and a secondary applying them has the same views. Nothing else holds
a view, so a restart, a rollback or an initial sync keeps them as they keep any collection.

A read on a view runs its pipeline over its source (the views under it resolved first, at most
20 deep), followed by the read's own stages, on the engine's aggregation. Writes, indexes and
renames on a view are refused with CommandNotSupportedOnView, as mongod refuses them.
"""

from __future__ import annotations

import copy

import mongomock

from mongod_double import crudcheck as check
from mongod_double.errors import (
    INVALID_NAMESPACE,
    INVALID_OPTIONS,
    NAMESPACE_EXISTS,
    NAMESPACE_NOT_FOUND,
    TYPE_MISMATCH,
    CommandError,
)
from mongod_double.storage import Storage, split_ns

SYSTEM_VIEWS = "system.views"
GRAPH_CONTAINS_CYCLE = 5
VIEW_DEPTH_LIMIT_EXCEEDED = 165
COMMAND_NOT_SUPPORTED_ON_VIEW = 166
OPTION_NOT_SUPPORTED_ON_VIEW = 167
OUT_IN_LOOKUP = 51047
OUT_IN_FACET = 40600
MAX_DEPTH = 20
# Stages that write, or read no collection: not allowed in a view's definition.
WRITING_STAGES = ("$out", "$merge")
COLLECTIONLESS_STAGES = ("$currentOp", "$listLocalSessions", "$listSessions", "$documents")
_scratch = mongomock.MongoClient()["views_scratch"]["docs"]


def views_ns(db: str) -> str:
    return f"{db}.{SYSTEM_VIEWS}"


def definition(storage: Storage, ns: str) -> dict | None:
    """The system.views document of the view ``ns``, or None when ``ns`` is no view."""
    db, _ = split_ns(ns)
    with storage.lock:
        if not storage.exists(views_ns(db)):
            return None
        return storage.collection(views_ns(db)).find_one({"_id": ns})


def is_view(storage: Storage, ns: str) -> bool:
    return definition(storage, ns) is not None


def all_views(storage: Storage, db: str) -> list[dict]:
    """The database's view documents, by name."""
    with storage.lock:
        if not storage.exists(views_ns(db)):
            return []
        return list(storage.collection(views_ns(db)).find({}).sort("_id", 1))


def listing(view: dict, name_only: bool) -> dict:
    """A view as listCollections shows it."""
    name = split_ns(view["_id"])[1]
    if name_only:
        return {"name": name, "type": "view"}
    options = {"viewOn": view["viewOn"], "pipeline": view["pipeline"]}
    return {"name": name, "type": "view", "options": options, "info": {"readOnly": True}}


def not_a_collection(ns: str) -> CommandError:
    message = f"Namespace {ns} is a view, not a collection"
    return CommandError(COMMAND_NOT_SUPPORTED_ON_VIEW, message)


def too_deep() -> CommandError:
    return CommandError(
        VIEW_DEPTH_LIMIT_EXCEEDED, f"View depth limit exceeded; maximum depth is {MAX_DEPTH}"
    )


def refuse(storage: Storage, ns: str) -> None:
    """A command that needs a collection (writes, indexes, rename) on a view: refused."""
    if is_view(storage, ns):
        raise not_a_collection(ns)


# -- definitions ---------------------------------------------------------------------------


def _check_name(db: str, name: str) -> None:
    if name.startswith("system.") or "$" in name:
        raise CommandError(INVALID_NAMESPACE, f"Cannot create a view called '{db}.{name}'")


def _check_stages(pipeline: list, nested_in: str | None = None) -> None:
    """mongod's checks of a view's pipeline: no stage writing data (also inside $lookup and
    $facet), none reading no collection."""
    for stage in pipeline:
        name = check.stage_name(stage)
        body = stage[name]
        if name in WRITING_STAGES:
            if nested_in == "$lookup":
                raise CommandError(OUT_IN_LOOKUP, f"{name} is not allowed within a $lookup")
            if nested_in == "$facet":
                raise CommandError(OUT_IN_FACET, f"{name} is not allowed within a $facet")
            raise CommandError(
                OPTION_NOT_SUPPORTED_ON_VIEW,
                f"The aggregation stage {name} cannot be used in a view's definition: it writes "
                "to disk",
            )
        if name in COLLECTIONLESS_STAGES or name == "$changeStream":
            code = OPTION_NOT_SUPPORTED_ON_VIEW if name == "$changeStream" else INVALID_NAMESPACE
            raise CommandError(code, f"The aggregation stage {name} cannot be used in a view")
        if name in ("$lookup", "$unionWith") and isinstance(body, dict):
            _check_stages(body.get("pipeline") or [], "$lookup" if name == "$lookup" else None)
        if name == "$facet" and isinstance(body, dict):
            for inner in body.values():
                if isinstance(inner, list):
                    _check_stages(inner, "$facet")


def parse(command: str, body: dict, db: str, name: str) -> dict:
    """The system.views document that ``body``'s viewOn / pipeline / collation define."""
    source = body.get("viewOn")
    if not isinstance(source, str):
        raise CommandError(TYPE_MISMATCH, f"BSON field '{command}.viewOn' is the wrong type")
    if not source:
        raise CommandError(INVALID_NAMESPACE, "invalid name for 'viewOn'")
    pipeline = body.get("pipeline", [])
    if not isinstance(pipeline, list) or not all(isinstance(s, dict) for s in pipeline):
        raise CommandError(TYPE_MISMATCH, f"BSON field '{command}.pipeline' is the wrong type")
    _check_stages(pipeline)
    doc = {"_id": f"{db}.{name}", "viewOn": source, "pipeline": copy.deepcopy(pipeline)}
    # Only the simple collation (the default) is the engine's: nothing to keep.
    check.check_collation(f"{command}.collation", body.get("collation"))
    return doc


def _check_graph(storage: Storage, doc: dict) -> None:
    """With ``doc`` in place, its chain of sources must end at a collection (or nothing)
    without meeting itself, within 20 views."""
    seen = {doc["_id"]}
    db = split_ns(doc["_id"])[0]
    current = doc
    for _ in range(MAX_DEPTH):
        ns = f"{db}.{current['viewOn']}"
        if ns in seen:
            raise CommandError(
                GRAPH_CONTAINS_CYCLE, f"View cycle detected: {' => '.join(sorted(seen))} => {ns}"
            )
        seen.add(ns)
        current = definition(storage, ns)
        if current is None:
            return
    raise too_deep()


def create(storage: Storage, db: str, name: str, options: dict) -> None:
    """``create`` with viewOn (``options``: the create command's options): the view's document
    inserted into system.views. The same definition again succeeds; a different one, or a
    collection of that name, is NamespaceExists."""
    if "viewOn" not in options:
        raise CommandError(INVALID_OPTIONS, "'pipeline' requires 'viewOn' to also be specified")
    others = sorted(set(options) - {"viewOn", "pipeline", "collation"})
    if others:
        raise CommandError(INVALID_OPTIONS, f"option(s) {others} cannot be given for a view")
    _check_name(db, name)
    doc = parse("create", options, db, name)
    with storage.lock:
        ns = doc["_id"]
        if storage.exists(ns):
            raise CommandError(NAMESPACE_EXISTS, f"Collection {ns} already exists.")
        existing = definition(storage, ns)
        if existing is not None:
            if existing == doc:
                return
            raise CommandError(NAMESPACE_EXISTS, f"A view already exists. NS: {ns}")
        _check_graph(storage, doc)
        storage.insert(views_ns(db), doc)


def modify(storage: Storage, db: str, name: str, body: dict) -> None:
    """``collMod`` of a view: viewOn and pipeline given together replace its definition."""
    ns = f"{db}.{name}"
    with storage.lock:
        existing = definition(storage, ns)
        if existing is None:
            raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {ns}")
        if "viewOn" not in body or "pipeline" not in body:
            raise CommandError(
                INVALID_OPTIONS, "Must specify both 'viewOn' and 'pipeline' when modifying a view"
            )
        doc = parse("collMod", body, db, name)
        _check_graph(storage, doc)
        if doc != existing:
            storage.replace(views_ns(db), ns, doc)


def drop(storage: Storage, ns: str) -> None:
    db = split_ns(ns)[0]
    storage.delete(views_ns(db), ns)


# -- reads ---------------------------------------------------------------------------------


def resolve(storage: Storage, ns: str) -> tuple[str, list[dict]] | None:
    """The collection a view reads and the whole pipeline it runs there (the innermost view's
    stages first); None when ``ns`` is no view."""
    db = split_ns(ns)[0]
    view = definition(storage, ns)
    if view is None:
        return None
    stages: list[dict] = []
    for _ in range(MAX_DEPTH):
        stages = copy.deepcopy(view["pipeline"]) + stages
        source = f"{db}.{view['viewOn']}"
        view = definition(storage, source)
        if view is None:
            return source, stages
    raise too_deep()


def read(storage: Storage, ns: str, stages: list[dict]) -> list[dict] | None:
    """The documents of the view ``ns`` through ``stages`` (the read's own), or None when
    ``ns`` is no view."""
    with storage.lock:
        resolved = resolve(storage, ns)
        if resolved is None:
            return None
        source, pipeline = resolved
        pipeline = pipeline + stages
        if not storage.exists(source):
            return []
        if source in storage.capped:
            _scratch.drop()
            docs = storage.documents(source)
            if docs:
                _scratch.insert_many(copy.deepcopy(docs))
            results = list(_scratch.aggregate(pipeline))
        else:
            results = list(storage.collection(source).aggregate(pipeline))
    return [_id_first(d) for d in results]


def _id_first(doc: dict) -> dict:
    if "_id" in doc and next(iter(doc)) != "_id":
        return {"_id": doc.pop("_id"), **doc}
    return doc


def find_stages(query: dict, sort: dict, skip: int, limit: int, projection: dict | None) -> list:
    """A find on a view as the aggregation mongod turns it into."""
    stages: list[dict] = []
    if query:
        stages.append({"$match": query})
    order = {k: v for k, v in sort.items() if k != "$natural"}  # a view has no natural order
    if order:
        stages.append({"$sort": order})
    if skip:
        stages.append({"$skip": skip})
    if limit:
        stages.append({"$limit": limit})
    if projection:
        stages.append({"$project": dict(projection)})
    return stages


def distinct(storage: Storage, ns: str, key: str, query: dict) -> list | None:
    docs = read(storage, ns, [{"$match": query}] if query else [])
    if docs is None:
        return None
    _scratch.drop()
    if docs:
        _scratch.insert_many(docs)
    return _scratch.distinct(key)


def refused_writes(ns: str, statements: list, ordered: bool) -> dict:
    """insert / update / delete on a view: each statement a write error (the first alone
    when ordered)."""
    error = not_a_collection(ns)
    count = 1 if ordered else len(statements)
    errors = [{"index": i, "code": error.code, "errmsg": error.errmsg} for i in range(count)]
    return {"n": 0, "writeErrors": errors}

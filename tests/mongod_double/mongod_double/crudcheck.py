"""What mongod checks before a CRUD command runs, and where the engine cannot follow.

mongod parses each command with its IDL: an unknown field is refused (40415), a missing required
field too (40414), a wrong type is TypeMismatch (14). Options the engine cannot apply (collation
other than "simple", hints on sparse or partial indexes, min/max, returnKey, ...) answer
NotImplemented (238) instead of being ignored. Field-name rules are MongoDB 5.0+'s
(``storage_validation``): ``_id`` may not be an array, regex or undefined, nor hold
``$``-prefixed names; a replacement may not have top-level ``$``-prefixed names; update paths may
not be empty or conflict. Sources: https://www.mongodb.com/docs/manual/reference/command/ (find,
insert, update, delete, findAndModify, count, distinct, aggregate) and
https://www.mongodb.com/docs/manual/core/dot-dollar-considerations/
"""

from __future__ import annotations

import datetime
import functools
import re
import uuid
from collections.abc import Callable

import bson
from bson.binary import Binary
from bson.code import Code
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp

from mongod_double.errors import BAD_VALUE, FAILED_TO_PARSE, TYPE_MISMATCH, CommandError

UNKNOWN_FIELD = 40415
MISSING_FIELD = 40414
INVALID_ID_FIELD = 53
DOLLAR_PREFIXED = 52
EMPTY_FIELD_NAME = 56
CONFLICTING_OPERATORS = 40
UNDEFINED_VARIABLE = 17276
BAD_VARIABLE_NAME = 16870
NOT_IMPLEMENTED = 238

# Arguments every command takes (MongoDB's generic_argument.idl).
GENERIC = frozenset(
    {
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "$db",
        "maxTimeMS",
        "readConcern",
        "writeConcern",
        "lsid",
        "clientOperationKey",
        "txnNumber",
        "autocommit",
        "startTransaction",
        "stmtId",
        "comment",
        "$readPreference",
        "$clusterTime",
        "$audit",
        "$client",
        "$configServerState",
        "allowImplicitCollectionCreation",
        "$oplogQueryData",
        "$queryOptions",
        "$replData",
        "databaseVersion",
        "shardVersion",
        "maxTimeMSOpOnly",
        "usesDefaultMaxTimeMS",
        "$configTime",
        "$topologyTime",
        "txnRetryCounter",
        "mayBypassWriteBlocking",
    }
)

UPDATE_MODIFIERS = frozenset(
    {
        "$set",
        "$unset",
        "$inc",
        "$mul",
        "$rename",
        "$min",
        "$max",
        "$currentDate",
        "$push",
        "$pull",
        "$pullAll",
        "$addToSet",
        "$pop",
        "$bit",
        "$setOnInsert",
    }
)
# Modifiers that never create the field they name.
_REMOVING = frozenset({"$unset", "$pull", "$pullAll", "$pop"})
PIPELINE_UPDATE_STAGES = frozenset(
    {"$addFields", "$set", "$project", "$unset", "$replaceRoot", "$replaceWith"}
)
# Stages with their own variable scopes or sub-pipelines: `let` is not substituted into them.
_SCOPED_STAGES = frozenset({"$lookup", "$graphLookup", "$facet", "$unionWith"})


def type_name(value: object) -> str:
    """MongoDB's name for the BSON type ``value`` is sent as."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Int64):
        return "long"
    if isinstance(value, int):
        return "int" if -(2**31) <= value < 2**31 else "long"
    names: list[tuple[type | tuple[type, ...], str]] = [
        (float, "double"),
        (str, "string"),
        (dict, "object"),
        ((list, tuple), "array"),
        (type(None), "null"),
        (ObjectId, "objectId"),
        (datetime.datetime, "date"),
        ((Regex, re.Pattern), "regex"),
        ((Binary, bytes, uuid.UUID), "binData"),
        (Decimal128, "decimal"),
        (Timestamp, "timestamp"),
        (MinKey, "minKey"),
        (MaxKey, "maxKey"),
        (Code, "javascript"),
    ]
    for kind, name in names:
        if isinstance(value, kind):
            return name
    return type(value).__name__


NUMBER_TYPES = "[long, int, decimal, double]"


def wrong_type(path: str, value: object, expected: str) -> CommandError:
    plural = "types" if expected.startswith("[") else "type"
    return CommandError(
        TYPE_MISMATCH,
        f"BSON field '{path}' is the wrong type '{type_name(value)}', expected {plural} "
        f"'{expected}'",
    )


def is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal128)) and not isinstance(value, bool)


# -- command shapes --------------------------------------------------------------------------


def check_fields(path: str, doc: dict, allowed: frozenset[str] | set[str], generic: bool) -> None:
    """Refuse fields the command does not have, as mongod's IDL parser does."""
    for name in doc:
        if name in allowed or (generic and name in GENERIC):
            continue
        raise CommandError(UNKNOWN_FIELD, f"BSON field '{path}.{name}' is an unknown field.")


def require(path: str, doc: dict, name: str) -> object:
    if name not in doc:
        raise CommandError(
            MISSING_FIELD, f"BSON field '{path}.{name}' is missing but a required field"
        )
    return doc[name]


def check_types(path: str, doc: dict, types: dict[str, str]) -> None:
    """``types``: field -> "bool" | "object" | "number" | "array" | "string"."""
    for name, kind in types.items():
        if name not in doc or (doc[name] is None and kind != "bool"):
            continue
        value = doc[name]
        if kind == "bool" and not isinstance(value, bool) and not is_number(value):
            raise wrong_type(f"{path}.{name}", value, "bool")
        if kind == "object" and not isinstance(value, dict):
            raise wrong_type(f"{path}.{name}", value, "object")
        if kind == "array" and not isinstance(value, list):
            raise wrong_type(f"{path}.{name}", value, "array")
        if kind == "number" and not is_number(value):
            raise wrong_type(f"{path}.{name}", value, NUMBER_TYPES)
        if kind == "string" and not isinstance(value, str):
            raise wrong_type(f"{path}.{name}", value, "string")


def check_generic(inv_name: str, body: dict) -> None:
    """Generic arguments checked as mongod checks them (a transaction's ``autocommit`` and
    ``startTransaction`` are the dispatcher's: see mongod_double.transactions)."""
    max_time = body.get("maxTimeMS")
    if max_time is not None:
        if not is_number(max_time):
            raise wrong_type(f"{inv_name}.maxTimeMS", max_time, NUMBER_TYPES)
        if max_time < 0:
            raise CommandError(
                BAD_VALUE, f"{max_time} value for maxTimeMS is out of range [0, 2147483647]"
            )


# -- options ---------------------------------------------------------------------------------


def check_collation(path: str, value: object) -> None:
    """Only the simple (binary) collation is the engine's; anything else is refused honestly."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise wrong_type(path, value, "object")
    if "locale" not in value:
        raise CommandError(MISSING_FIELD, "BSON field 'locale' is missing but a required field")
    if value != {"locale": "simple"}:
        raise NotImplementedError(
            f"collation {value!r} (only {{locale: 'simple'}}, binary comparison, is supported)"
        )


def check_hint(path: str, value: object, indexes: list[dict] | None) -> None:
    """``indexes``: the collection's index specs, None when the collection does not exist."""
    if value is None or value == "" or value == {}:
        return
    if not isinstance(value, (str, dict)):
        raise CommandError(FAILED_TO_PARSE, f"BSON field '{path}' must be a string or an object")
    if isinstance(value, dict) and list(value) == ["$natural"]:
        if value["$natural"] not in (1, -1):
            raise CommandError(BAD_VALUE, "$natural hint may only accept 1 or -1")
        return
    if indexes is None:
        return  # no collection: nothing to scan, as mongod's EOF plan
    for spec in indexes:
        named = isinstance(value, str) and spec.get("name") == value
        keyed = isinstance(value, dict) and list(spec.get("key", {}).items()) == list(value.items())
        if named or keyed:
            if spec.get("sparse") or "partialFilterExpression" in spec:
                raise NotImplementedError(
                    f"a hint on the sparse or partial index {spec.get('name')!r} (it can "
                    "change which documents match)"
                )
            return
    raise CommandError(BAD_VALUE, "hint provided does not correspond to an existing index")


def check_sort(path: str, sort: object) -> None:
    if sort is None:
        return
    if not isinstance(sort, dict):
        raise wrong_type(path, sort, "object")
    for key, direction in sort.items():
        if isinstance(direction, dict):
            raise NotImplementedError(f"sort by {{{key}: {direction!r}}} ($meta)")
        if not is_number(direction) and not isinstance(direction, str):
            raise CommandError(15974, f"Illegal key in $sort specification: {key}: {direction!r}")
        if isinstance(direction, str) or direction not in (1, -1):
            raise CommandError(
                15975, "$sort key ordering must be 1 (for ascending) or -1 (for descending)"
            )


def check_projection(path: str, projection: object) -> None:
    """Inclusion/exclusion projections of plain paths; operators are refused honestly."""
    if projection is None:
        return
    if not isinstance(projection, dict):
        raise wrong_type(path, projection, "object")
    mode = None
    for key, value in projection.items():
        if not isinstance(key, str) or key.startswith("$"):
            raise CommandError(
                16410,
                "FieldPath field names may not start with '$'. Consider using $getField or "
                "$setField.",
            )
        if key == "" or "" in key.split("."):
            raise CommandError(
                40352 if key == "" else 15998,
                "FieldPath cannot be constructed with empty string"
                if key == ""
                else "FieldPath field names may not be empty strings.",
            )
        if key.endswith(".$") or ".$." in key:
            raise NotImplementedError(f"positional projection '{key}'")
        if isinstance(value, (dict, str, list)):
            raise NotImplementedError(f"projection {{{key}: {value!r}}} (operators, expressions)")
        if not (isinstance(value, bool) or is_number(value)):
            raise NotImplementedError(f"projection {{{key}: {value!r}}}")
        include = bool(value)
        if key == "_id":
            continue
        if mode is None:
            mode = include
        elif include != mode:
            if include:
                raise CommandError(
                    31253, f"Cannot do inclusion on field {key} in exclusion projection"
                )
            raise CommandError(31254, f"Cannot do exclusion on field {key} in inclusion projection")


def check_filter(path: str, query: object) -> dict:
    if query is None:
        return {}
    if not isinstance(query, dict):
        raise wrong_type(path, query, "object")
    return query


# -- let -------------------------------------------------------------------------------------


def let_values(path: str, let: object) -> dict:
    """Constant values of ``let``; an expression needing evaluation is refused honestly."""
    if let is None:
        return {}
    if not isinstance(let, dict):
        raise wrong_type(path, let, "object")
    values = {}
    for name, value in let.items():
        if not name or not (name[0].islower() or not name[0].isascii()):
            raise CommandError(
                BAD_VARIABLE_NAME,
                f"'{name}' starts with an invalid character for a user variable name",
            )
        values[name] = _constant(name, value)
    return values


def _constant(name: str, value: object) -> object:
    if isinstance(value, str) and value.startswith("$"):
        raise NotImplementedError(f"let variable '{name}' given as the expression {value!r}")
    if isinstance(value, list):
        return [_constant(name, v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["$literal"]:
            return value["$literal"]
        if any(isinstance(k, str) and k.startswith("$") for k in value):
            raise NotImplementedError(f"let variable '{name}' given as the expression {value!r}")
        return {k: _constant(name, v) for k, v in value.items()}
    return value


def _substitute(value: object, variables: dict) -> object:
    if isinstance(value, str) and value.startswith("$$"):
        name, _, rest = value[2:].partition(".")
        if name in variables:
            found = variables[name]
            for part in rest.split(".") if rest else []:
                if not isinstance(found, dict) or part not in found:
                    raise NotImplementedError(f"the path {value!r} into a let variable")
                found = found[part]
            return {"$literal": found}
        return value
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        if "$literal" in value:
            return value
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value


def let_filter(query: dict, variables: dict) -> dict:
    """Put ``let`` constants into the aggregation expressions ($expr) of a query."""
    if not variables:
        return query
    out = {}
    for key, value in query.items():
        if key == "$expr":
            out[key] = _substitute(value, variables)
        elif key in ("$and", "$or", "$nor") and isinstance(value, list):
            out[key] = [let_filter(v, variables) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


def let_pipeline(pipeline: list, variables: dict) -> list:
    if not variables:
        return pipeline
    out = []
    for stage in pipeline:
        if not isinstance(stage, dict):
            out.append(stage)
            continue
        scoped = sorted(_SCOPED_STAGES & set(stage))
        if scoped:
            raise NotImplementedError(f"let variables together with {scoped[0]}")
        if "$match" in stage and isinstance(stage["$match"], dict):
            out.append({"$match": let_filter(stage["$match"], variables)})
        else:
            out.append(_substitute(stage, variables))
    return out


# -- documents -------------------------------------------------------------------------------


def _dollar_names(value: object) -> str | None:
    """The first $-prefixed field name inside ``value`` (objects and arrays, any depth)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            if isinstance(key, str) and key.startswith("$"):
                return key
            found = _dollar_names(sub)
            if found:
                return found
    elif isinstance(value, list):
        for sub in value:
            found = _dollar_names(sub)
            if found:
                return found
    return None


def check_id(value: object) -> None:
    kind = type_name(value)
    if kind in ("regex", "array", "undefined"):
        raise CommandError(INVALID_ID_FIELD, f"The '_id' value cannot be of type {kind}")
    if isinstance(value, dict):
        name = _dollar_names(value)
        if name:
            raise CommandError(
                DOLLAR_PREFIXED,
                f"_id fields may not contain '$'-prefixed fields: {name} is not valid for storage.",
            )


def check_insert_document(doc: object) -> None:
    if not isinstance(doc, dict):
        raise wrong_type("insert.documents", doc, "object")
    for key in doc:
        if isinstance(key, str) and key.startswith("$"):
            raise NotImplementedError(
                f"storing the top-level '$'-prefixed field name '{key}' (MongoDB 5.0+ accepts it "
                "in inserts; the engine cannot store it)"
            )
    if "_id" in doc:
        check_id(doc["_id"])


def _dbref_ok(doc: dict, key: str) -> bool:
    keys = list(doc)
    return key in ("$ref", "$id", "$db") and keys[:2] == ["$ref", "$id"]


def check_replacement(doc: dict) -> None:
    for key in doc:
        if isinstance(key, str) and key.startswith("$") and not _dbref_ok(doc, key):
            raise CommandError(
                DOLLAR_PREFIXED,
                f"The dollar ($) prefixed field '{key}' in '{key}' is not allowed in the context "
                "of an update's replacement document. Consider using an aggregation pipeline "
                "with $replaceWith.",
            )
    if "_id" in doc:
        check_id(doc["_id"])


def _update_paths(modifier: str, spec: dict) -> list[str]:
    paths = list(spec)
    if modifier == "$rename":
        paths += [v for v in spec.values() if isinstance(v, str)]
    return paths


def check_operator_update(update: dict) -> None:
    """Modifier names, argument shapes, paths and conflicts, as mongod's update parser."""
    seen: list[str] = []
    for modifier, spec in update.items():
        if modifier not in UPDATE_MODIFIERS:
            raise CommandError(
                FAILED_TO_PARSE,
                f"Unknown modifier: {modifier}. Expected a valid update modifier or "
                "pipeline-style update specified as an array",
            )
        if not isinstance(spec, dict):
            raise CommandError(
                FAILED_TO_PARSE,
                f"Modifiers operate on fields but we found type {type_name(spec)} instead. For "
                f"example: {{$mod: {{<field>: ...}}}} not {{{modifier}: {spec!r}}}",
            )
        if modifier == "$rename":
            for source, target in spec.items():
                if not isinstance(target, str):
                    raise CommandError(
                        BAD_VALUE,
                        f"The 'to' field for $rename must be a string: {source}: {target!r}",
                    )
                if source == target:
                    raise CommandError(
                        BAD_VALUE,
                        "The source and target field for $rename must differ: "
                        f"{source}: {target!r}",
                    )
        for path in _update_paths(modifier, spec):
            _check_update_path(path)
            first = path.split(".")[0]
            if first.startswith("$") and first != "$" and modifier not in _REMOVING:
                raise CommandError(
                    DOLLAR_PREFIXED,
                    f"The dollar ($) prefixed field '{first}' in '{path}' is not allowed in the "
                    "context of an update's replacement document. Consider using an aggregation "
                    "pipeline with $replaceWith.",
                )
            for other in seen:
                if other == path or other.startswith(path + ".") or path.startswith(other + "."):
                    at = path if other.startswith(path) else other
                    raise CommandError(
                        CONFLICTING_OPERATORS,
                        f"Updating the path '{path}' would create a conflict at '{at}'",
                    )
            seen.append(path)
        if any("$[" in part for path in spec for part in path.split(".")):
            raise NotImplementedError("the filtered positional operator $[<identifier>] / $[]")


def _check_update_path(path: str) -> None:
    if path == "":
        raise CommandError(EMPTY_FIELD_NAME, "An empty update path is not valid.")
    if "" in path.split("."):
        raise CommandError(
            EMPTY_FIELD_NAME,
            f"The update path '{path}' contains an empty field name, which is not allowed.",
        )


def stage_name(stage: object) -> str:
    """The name of a pipeline stage, which must be a document with exactly one field."""
    if not isinstance(stage, dict) or len(stage) != 1:
        raise CommandError(
            40323, "A pipeline stage specification object must contain exactly one field."
        )
    return next(iter(stage))


def check_update_modification(update: object) -> str:
    """Returns "replacement", "operators" or "pipeline"."""
    if isinstance(update, list):
        for stage in update:
            name = stage_name(stage)
            if name not in PIPELINE_UPDATE_STAGES:
                raise CommandError(72, f"{name} is not allowed to be used within an update")
        return "pipeline"
    if not isinstance(update, dict):
        raise CommandError(FAILED_TO_PARSE, "Update argument must be either an object or an array")
    if update and isinstance(next(iter(update)), str) and next(iter(update)).startswith("$"):
        check_operator_update(update)
        return "operators"
    check_replacement(update)
    return "replacement"


# -- the engine --------------------------------------------------------------------------------

ENGINE_ERRORS = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    ZeroDivisionError,
    OverflowError,
    RecursionError,
    bson.errors.InvalidDocument,
)


def engine_refusal(what: str, exc: BaseException) -> CommandError:
    """An engine failure on input mongod would evaluate: refused honestly (not InternalError)."""
    return CommandError(
        NOT_IMPLEMENTED,
        f"not implemented by the mongod double's query engine: {what} "
        f"({type(exc).__name__}: {exc})",
    )


def honest(what: str) -> Callable:
    """Decorate a command handler: an engine exception becomes NotImplemented (238)."""

    def wrap(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def run(inv):
            try:
                return handler(inv)
            except ENGINE_ERRORS as exc:
                raise engine_refusal(what, exc) from exc

        return run

    return wrap


# -- update operators against a document -------------------------------------------------------

PATH_NOT_VIABLE = 28
_NUMERIC_MODIFIERS = ("$inc", "$mul")
_ARRAY_MODIFIERS = ("$push", "$addToSet", "$pull", "$pullAll", "$pop")
_MISSING = object()


def _walk(doc: dict, path: str) -> tuple[object, str | None]:
    """The value at ``path`` (or _MISSING), and the reason no field can be created there."""
    current: object = doc
    parts = path.split(".")
    for position, part in enumerate(parts):
        if part == "$" or part.startswith("$["):
            return _MISSING, None  # positional: the engine resolves it
        last = position == len(parts) - 1
        if isinstance(current, dict):
            if part not in current:
                return _MISSING, None
            current = current[part]
        elif isinstance(current, list) and part.isdigit():
            if int(part) >= len(current):
                return _MISSING, None
            current = current[int(part)]
        else:
            parent = parts[position - 1] if position else ""
            return _MISSING, f"Cannot create field '{part}' in element {{{parent}: {current!r}}}"
        if last:
            return current, None
    return current, None


def check_operators_on(doc: dict, update: dict) -> None:
    """What mongod refuses when applying ``update`` to ``doc`` (types along and at paths)."""
    for modifier, spec in update.items():
        if not isinstance(spec, dict):
            continue
        for path, argument in spec.items():
            target = argument if modifier == "$rename" else path
            if not isinstance(target, str):
                continue
            value, blocked = _walk(doc, target)
            if blocked and modifier not in _REMOVING:
                raise CommandError(PATH_NOT_VIABLE, blocked)
            if modifier in _NUMERIC_MODIFIERS:
                if not is_number(argument):
                    raise CommandError(
                        TYPE_MISMATCH,
                        f"Cannot {'increment' if modifier == '$inc' else 'multiply'} with "
                        f"non-numeric argument: {{{path}: {argument!r}}}",
                    )
                if value is not _MISSING and not is_number(value):
                    raise CommandError(
                        TYPE_MISMATCH,
                        f"Cannot apply {modifier} to a value of non-numeric type. {{_id: "
                        f"{doc.get('_id')!r}}} has the field '{path.split('.')[-1]}' of "
                        f"non-numeric type {type_name(value)}",
                    )
            if (
                modifier in _ARRAY_MODIFIERS
                and value is not _MISSING
                and not isinstance(value, list)
            ):
                raise CommandError(
                    TYPE_MISMATCH if modifier == "$pop" else BAD_VALUE,
                    f"The field '{path}' must be an array but is of type {type_name(value)} "
                    f"in document {{_id: {doc.get('_id')!r}}}",
                )


# -- variables ---------------------------------------------------------------------------------


def _defined_names(value: object, names: set[str]) -> set[str]:
    """Variable names an expression tree defines ($let vars, as:, $lookup let, $reduce)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            if key == "as" and isinstance(sub, str):
                names.add(sub)
            if key in ("vars", "let") and isinstance(sub, dict):
                names.update(sub)
            if key == "$reduce":
                names.update(("this", "value"))
            _defined_names(sub, names)
    elif isinstance(value, list):
        for sub in value:
            _defined_names(sub, names)
    return names


def _used_names(value: object, used: list[str]) -> list[str]:
    if isinstance(value, str) and value.startswith("$$"):
        used.append(value[2:].split(".")[0])
    elif isinstance(value, dict):
        if "$literal" not in value:
            for sub in value.values():
                _used_names(sub, used)
    elif isinstance(value, list):
        for sub in value:
            _used_names(sub, used)
    return used


def _expressions_of_filter(query: object, out: list) -> list:
    if isinstance(query, dict):
        for key, value in query.items():
            if key == "$expr":
                out.append(value)
            elif key in ("$and", "$or", "$nor") and isinstance(value, list):
                for sub in value:
                    _expressions_of_filter(sub, out)
    return out


def check_variables(query: object = None, pipeline: list | None = None) -> None:
    """A user variable (lower-case name) used but defined nowhere: 17276, as mongod."""
    trees = _expressions_of_filter(query, [])
    for stage in pipeline or []:
        if isinstance(stage, dict) and isinstance(stage.get("$match"), dict):
            trees.extend(_expressions_of_filter(stage["$match"], []))
        else:
            trees.append(stage)
    defined = _defined_names(trees, set())
    for name in _used_names(trees, []):
        if name and name not in defined and not name[0].isupper():
            raise CommandError(UNDEFINED_VARIABLE, f"Use of undefined variable: {name}")

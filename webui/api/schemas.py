"""Request and response schemas of the REST API (they are also its OpenAPI document)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", error="1 to 63 letters, digits, '.', '-' or '_'"
)
SHORT = validate.Length(min=1, max=200)


class Strict(Schema):
    class Meta:
        unknown = EXCLUDE


class UserOut(Strict):
    id = fields.String(attribute="_id")
    username = fields.String()
    role = fields.String()
    disabled = fields.Boolean()
    created_at = fields.Float()


class UserIn(Strict):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=10, max=1024)
    )
    role = fields.String(load_default="user", validate=validate.OneOf(["admin", "user"]))


class UserPatch(Strict):
    role = fields.String(validate=validate.OneOf(["admin", "user"]))
    disabled = fields.Boolean()


class ProjectIn(Strict):
    name = fields.String(required=True, validate=NAME)


class ProjectOut(Strict):
    id = fields.String(attribute="_id")
    name = fields.String()
    created_at = fields.Float()
    created_by = fields.String()


class MemberIn(Strict):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    role = fields.String(
        required=True, validate=validate.OneOf(["read-only", "operator", "owner", "none"])
    )


class MemberOut(Strict):
    username = fields.String()
    role = fields.String()


class HostIn(Strict):
    name = fields.String(required=True, validate=NAME)
    address = fields.String(required=True, validate=validate.Length(min=1, max=253))
    port = fields.Integer(load_default=22, validate=validate.Range(min=1, max=65535))
    user = fields.String(load_default="root", validate=validate.Regexp(r"^[a-z_][a-z0-9_-]{0,31}$"))
    connection = fields.String(load_default="ssh", validate=validate.OneOf(["ssh", "local"]))


class HostOut(Strict):
    id = fields.String(attribute="_id")
    project_id = fields.String()
    name = fields.String()
    address = fields.String()
    port = fields.Integer()
    user = fields.String()
    connection = fields.String()
    created_at = fields.Float()
    agent = fields.Dict(
        metadata={"description": "what the host's agent last reported (see the ingest API)"}
    )


class CredentialFields(Strict):
    username = fields.String(validate=validate.Length(min=1, max=200))
    password = fields.String(load_only=True, validate=validate.Length(min=1, max=16384))
    access_key_id = fields.String(load_only=True, validate=validate.Length(min=1, max=200))
    secret_access_key = fields.String(load_only=True, validate=validate.Length(min=1, max=16384))
    private_key = fields.String(load_only=True, validate=validate.Length(min=1, max=16384))
    passphrase = fields.String(load_only=True, validate=validate.Length(min=1, max=1024))
    endpoint_url = fields.String(validate=validate.Length(min=1, max=500))


class CredentialIn(Strict):
    name = fields.String(required=True, validate=NAME)
    kind = fields.String(required=True, validate=validate.OneOf(["aws", "ssh_key", "mongodb"]))
    fields_ = fields.Nested(CredentialFields, required=True, data_key="fields")


class CredentialOut(Strict):
    id = fields.String(attribute="_id")
    project_id = fields.String()
    name = fields.String()
    kind = fields.String()
    public = fields.Dict(keys=fields.String(), values=fields.String())
    created_at = fields.Float()


class ClusterIn(Strict):
    """A cluster on registered hosts, deployed at once (the console's form sends the same)."""

    name = fields.String(required=True, validate=NAME)
    topology = fields.String(
        load_default="replicaset", validate=validate.OneOf(["replicaset", "sharded"])
    )
    host_ids = fields.List(
        fields.String(validate=SHORT), required=True, validate=validate.Length(min=1, max=7)
    )
    mongodb_version = fields.String(
        load_default="7.0.14", validate=SHORT, metadata={"description": "e.g. 7.0.14"}
    )
    replica_set = fields.String(
        load_default="rs0", validate=SHORT, metadata={"description": "replica set name"}
    )
    port = fields.Integer(load_default=27017, metadata={"description": "replica set port"})
    shards = fields.Integer(load_default=2, metadata={"description": "sharded: shard count"})
    routers = fields.Integer(
        load_default=2, metadata={"description": "sharded: mongos on the first N hosts"}
    )
    auth = fields.Boolean(
        load_default=True, metadata={"description": "access control (keyFile, administrator)"}
    )
    tls = fields.Boolean(load_default=True, metadata={"description": "TLS required"})
    ssh_credential_id = fields.String(allow_none=True, validate=SHORT)
    mongodb_credential_id = fields.String(
        allow_none=True, validate=SHORT, metadata={"description": "the administrator (auth)"}
    )


class ClusterOut(Strict):
    id = fields.String(attribute="_id")
    project_id = fields.String()
    name = fields.String()
    host_ids = fields.List(fields.String())
    playbook = fields.String()
    topology = fields.String(allow_none=True)
    mongodb_version = fields.String(allow_none=True)
    created_at = fields.Float()


class MemberStateOut(Strict):
    host = fields.String()
    address = fields.String()
    port = fields.Integer(allow_none=True)
    replica_set = fields.String(allow_none=True)
    role = fields.String()
    state = fields.String()
    health = fields.Float(allow_none=True)


class CloudClusterIn(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=20))
    spec = fields.Dict(
        keys=fields.String(validate=SHORT),
        required=True,
        metadata={"description": "a cluster spec (see `wap plan`) without project and cluster"},
    )
    cloud_credential_id = fields.String(required=True, validate=SHORT)
    ssh_credential_id = fields.String(required=True, validate=SHORT)
    mongodb_credential_id = fields.String(allow_none=True, validate=SHORT)
    deploy_vars = fields.Dict(keys=fields.String(validate=SHORT), load_default=dict)


class ClusterDetailOut(ClusterOut):
    provider = fields.String(allow_none=True)
    state = fields.String()
    spec = fields.Dict(allow_none=True)
    plan = fields.Dict(allow_none=True)
    credential_ids = fields.List(fields.String())
    deploy_vars = fields.Dict()
    created_by = fields.String(allow_none=True)
    replica_set = fields.String(allow_none=True)
    port = fields.Integer(allow_none=True)
    shards = fields.Integer(allow_none=True)
    routers = fields.Integer(allow_none=True)
    security = fields.Dict(allow_none=True)
    members = fields.List(
        fields.Nested(MemberStateOut),
        metadata={"description": "as the last finished deploy job reported them"},
    )
    connection_string = fields.String(metadata={"description": "no user or password in it"})


class ClusterDeleteIn(Strict):
    confirm = fields.String(required=True, validate=SHORT, metadata={"description": "its name"})


class JobIn(Strict):
    playbook = fields.String(required=True, validate=SHORT)
    host_ids = fields.List(fields.String(validate=SHORT), validate=validate.Length(max=500))
    credential_ids = fields.List(fields.String(validate=SHORT), validate=validate.Length(max=10))
    extra_vars = fields.Dict(keys=fields.String(validate=SHORT))
    cluster_id = fields.String(allow_none=True, validate=SHORT)


class JobOut(Strict):
    id = fields.String(attribute="_id")
    project_id = fields.String()
    playbook = fields.String()
    host_ids = fields.List(fields.String())
    credential_ids = fields.List(fields.String())
    extra_vars = fields.Dict()
    cluster_id = fields.String(allow_none=True)
    cluster_action = fields.String(allow_none=True)
    status = fields.String()
    reason = fields.String()
    created_by = fields.String()
    created_at = fields.Float()
    started_at = fields.Float(allow_none=True)
    finished_at = fields.Float(allow_none=True)
    last_counter = fields.Integer()
    rc = fields.Integer(allow_none=True)
    stats = fields.Dict(allow_none=True)
    cancel_requested = fields.Boolean()


class EventsQuery(Strict):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**62))
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=1000))


class EventOut(Strict):
    job_id = fields.String()
    counter = fields.Integer()
    uuid = fields.String()
    event = fields.String()
    stdout = fields.String()
    created = fields.Float()
    host = fields.String()
    task = fields.String()
    play = fields.String()
    changed = fields.Boolean()
    stats = fields.Dict()
    at = fields.Float()
    start = fields.Float()
    end = fields.Float()
    task_uuid = fields.String()
    ignored = fields.Boolean()


class TimelineHostOut(Strict):
    host = fields.String()
    start = fields.Float()
    end = fields.Float(allow_none=True, metadata={"description": "null while the host runs it"})
    duration = fields.Float()
    outcome = fields.String(
        metadata={"description": "ok, changed, failed, ignored, skipped, unreachable, running"}
    )


class TimelineSpan(Strict):
    name = fields.String()
    start = fields.Float()
    end = fields.Float()
    duration = fields.Float()


class TimelineTaskOut(TimelineSpan):
    hosts = fields.List(fields.Nested(TimelineHostOut))


class TimelinePlayOut(TimelineSpan):
    tasks = fields.List(fields.Nested(TimelineTaskOut))


class TimelineOut(Strict):
    start = fields.Float(allow_none=True)
    end = fields.Float(allow_none=True)
    duration = fields.Float()
    finished = fields.Boolean(metadata={"description": "the play recap has been seen"})
    hosts = fields.List(fields.String())
    plays = fields.List(fields.Nested(TimelinePlayOut))


class TokenIn(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))


class TokenOut(Strict):
    id = fields.String(attribute="_id")
    name = fields.String()
    prefix = fields.String()
    created_at = fields.Float()
    last_used_at = fields.Float(allow_none=True)


class TokenCreated(TokenOut):
    token = fields.String(metadata={"description": "shown this once; only its hash is kept"})


class AuditQuery(Strict):
    actor = fields.String(load_default="", validate=validate.Length(max=64))
    action = fields.String(load_default="", validate=validate.Length(max=64))
    outcome = fields.String(load_default="", validate=validate.OneOf(["", "ok", "failed"]))
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))
    skip = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))


class AuditOut(Strict):
    at = fields.Float()
    actor = fields.String()
    actor_id = fields.String(allow_none=True)
    source = fields.String()
    action = fields.String()
    target = fields.String()
    outcome = fields.String()
    detail = fields.Dict()


class ClusterDeleteOut(Strict):
    deleted = fields.Boolean(metadata={"description": "true: gone at once (nothing provisioned)"})
    job = fields.Nested(JobOut, allow_none=True, metadata={"description": "the teardown job"})


class ClusterCreated(ClusterDetailOut):
    job = fields.Nested(JobOut, metadata={"description": "the deployment job, queued"})

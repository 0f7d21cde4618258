"""Clusters on registered hosts: what an operator chooses (topology, hosts, MongoDB version, set
and cluster names, security) becomes the deploy playbook's variables; the cluster is stored and
its deployment started as one job. The console's form and `POST /api/v1/projects/{id}/clusters`
both call `create`, so they do the same thing.

Nobody types a variable here: every value the job gets is built from checked fields, and still
goes through the job's checks (webui.services.jobs: variables the playbook documents, host
patterns naming the job's own hosts only). The one value the platform adds itself is the path of
a MongoDB tarball it offers (`<data dir>/packages`), a file on the workers an operator could not
name.

The deploy job ends with the agents on the cluster's hosts (deploy_agent.yml, run by the job
after the deploy playbook with a token per host, webui.jobs.agents) when the platform knows how
hosts reach it (WAP_PUBLIC_URL) and has the agent's wheelhouse (WAP_AGENT_WHEELHOUSE).

A cluster's members and their states are read from what its last finished deploy job reported
(the playbooks' `set_stats` `wap_members`): the cluster's state is that job's outcome.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from pymongo.errors import DuplicateKeyError

from webui.config import Settings
from webui.services import audit, cloud, jobs, projects
from webui.services.audit import Actor
from webui.services.errors import Conflict, Invalid
from webui.store import Store, now

PLAYBOOKS = {"replicaset": "deploy_replicaset.yml", "sharded": "deploy_sharded.yml"}
VERSION_RE = re.compile(r"^[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,3}$")
SET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
PACKAGE_RE = re.compile(r"^mongodb-linux-[A-Za-z0-9_.-]+-([0-9]+\.[0-9]+\.[0-9]+)\.tgz$")
MEMBER_COUNTS = (1, 3, 5, 7)  # every set of the cluster has a member on each host: voters
KEY_FILE = "/etc/mongodb/keyfile"
# Ports of a sharded cluster: the routers where applications connect, the config servers, then
# one port per shard (27018, 27020, 27021, ...).
MONGOS_PORT, CONFIG_PORT = 27017, 27019
DEPLOY_ACTION = "deploy"
DEFAULTS: dict[str, Any] = {
    "topology": "replicaset",
    "mongodb_version": "7.0.14",
    "replica_set": "rs0",
    "port": 27017,
    "shards": 2,
    "routers": 2,
    "auth": True,
    "tls": True,
}
# What a cluster's state is while (or after) its last deploy job is in each status.
STATES = {
    "queued": "deploying",
    "running": "deploying",
    "successful": "running",
    "failed": "deploy failed",
    "canceled": "deploy canceled",
    "lost": "deploy lost",
}


def packages(settings: Settings) -> dict[str, Path]:
    """MongoDB tarballs the platform offers (MongoDB's layout, named
    mongodb-linux-<arch>-<distro>-<version>.tgz, in `<data dir>/packages`), by version: a
    version found here installs from the file, any other from MongoDB's repositories."""
    folder = settings.data_dir / "packages"
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            match = PACKAGE_RE.match(path.name)
            if match and path.is_file():
                found[match.group(1)] = path
    return found


def _shard_ports(count: int) -> list[int]:
    return [27018, *range(27020, 27020 + count - 1)][:count]


def _flag(value: Any) -> bool:
    return value in (True, "1", "on", "true", "yes")


def _integer(value: Any, low: int, high: int, field: str, errors: dict[str, list[str]]) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors[field] = [f"a whole number from {low} to {high}"]
        return low
    return value


def check(
    store: Store, settings: Settings, project_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """The request with its defaults, every field checked; Invalid names each wrong field."""
    errors: dict[str, list[str]] = {}
    request = {**DEFAULTS, **{k: v for k, v in data.items() if v is not None and v != ""}}
    name = str(request.get("name") or "")
    if not projects.NAME_RE.match(name):
        errors["name"] = ["1 to 63 letters, digits, '.', '-' or '_'"]
    topology = request["topology"]
    if topology not in PLAYBOOKS:
        errors["topology"] = [f"one of: {', '.join(PLAYBOOKS)}"]
    version = str(request["mongodb_version"]).strip()
    if not VERSION_RE.match(version):
        errors["mongodb_version"] = ["a MongoDB version such as 7.0.14"]
    host_ids = request.get("host_ids") or []
    hosts: list[dict[str, Any]] = []
    if not isinstance(host_ids, list) or not all(isinstance(h, str) for h in host_ids):
        errors["host_ids"] = ["a list of host ids"]
    else:
        host_ids = list(dict.fromkeys(host_ids))
        by_id = {h["_id"]: h for h in projects.list_hosts(store, project_id)}
        hosts = [by_id[h] for h in host_ids if h in by_id]
        if len(hosts) != len(host_ids):
            errors["host_ids"] = ["hosts registered in this project"]
        elif len(hosts) not in MEMBER_COUNTS:
            errors["host_ids"] = [
                "pick 1, 3, 5 or 7 hosts: each replica set has a member on every host, and a"
                " majority of an odd number survives the loss of a host"
            ]
    request["replica_set"] = str(request["replica_set"]).strip()
    if topology == "replicaset" and not SET_NAME_RE.match(request["replica_set"]):
        errors["replica_set"] = ["1 to 32 letters, digits, '-' or '_'"]
    request["port"] = _integer(request["port"], 1024, 65535, "port", errors)
    request["shards"] = _integer(request["shards"], 1, 8, "shards", errors)
    request["routers"] = _integer(request["routers"], 1, 7, "routers", errors)
    if topology == "sharded" and hosts and request["routers"] > len(hosts):
        errors["routers"] = [f"at most one router per host ({len(hosts)} picked)"]
    request["auth"], request["tls"] = _flag(request["auth"]), _flag(request["tls"])
    found = {}
    for field, kind in (("ssh_credential_id", "ssh_key"), ("mongodb_credential_id", "mongodb")):
        wanted = request.get(field)
        if not wanted:
            continue
        credential = store.credentials.find_one(
            {"_id": str(wanted), "project_id": project_id, "kind": kind}
        )
        if credential is None:
            errors[field] = [f"a {kind} credential of this project"]
        found[kind] = credential
    if request["auth"] and not request.get("mongodb_credential_id"):
        errors["mongodb_credential_id"] = [
            "access control needs the administrator: a MongoDB user credential of this project"
        ]
    if errors:
        raise Invalid("the cluster cannot be created as given", errors)
    return {
        "name": name,
        "topology": topology,
        "mongodb_version": version,
        "hosts": hosts,
        "replica_set": request["replica_set"],
        "port": request["port"],
        "shards": request["shards"],
        "routers": request["routers"],
        "auth": request["auth"],
        "tls": request["tls"],
        "credential_ids": [c["_id"] for c in found.values() if c],
    }


def deploy_variables(project: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The deploy playbook's variables for a checked request: plain data, no templates."""
    names = [h["name"] for h in request["hosts"]]
    addresses = [h["address"] for h in request["hosts"]]
    auth, tls = request["auth"], request["tls"]
    common: dict[str, Any] = {
        "mongodb_install_version": request["mongodb_version"],
        "mongodb_security_cluster_name": f"{cloud.project_slug(project['name'])}-{request['name']}",
        "mongodb_security_cluster_auth": "keyfile" if auth else "none",
        "mongodb_security_tls": tls,
        "mongodb_config_auth": auth,
        "mongodb_config_tls_mode": "requireTLS" if tls else "disabled",
        "mongodb_replicaset_tls": tls,
        "mongodb_users_tls": tls,
    }
    if auth:
        common["mongodb_config_key_file"] = KEY_FILE
    if request["topology"] == "replicaset":
        name, port = request["replica_set"], request["port"]
        members: list[dict[str, Any]] = [{"host": f"{a}:{port}"} for a in addresses]
        members[0]["priority"] = 2  # the first host picked is the preferred primary
        return {
            **common,
            "wap_replicaset_hosts": names,
            "mongodb_config_instances": [{"name": name, "port": port, "replica_set": name}],
            "mongodb_replicaset_name": name,
            "mongodb_replicaset_port": port,
            "mongodb_replicaset_members": members,
            "mongodb_users_port": port,
            "mongodb_users_replica_set": name,
        }
    sets = [{"name": "cfg", "port": CONFIG_PORT, "role": "configsvr"}]
    sets += [
        {"name": f"shard{n}", "port": port, "role": "shardsvr"}
        for n, port in enumerate(_shard_ports(request["shards"]), start=1)
    ]

    def seeds(s: dict[str, Any]) -> str:
        return s["name"] + "/" + ",".join(f"{a}:{s['port']}" for a in addresses)

    return {
        **common,
        "wap_sharded_hosts": names,
        "wap_mongos_hosts": names[: request["routers"]],
        "wap_mongod_instances": [
            {
                "name": s["name"],
                "port": s["port"],
                "replica_set": s["name"],
                "cluster_role": s["role"],
            }
            for s in sets
        ],
        "wap_replica_sets": [
            {
                "name": s["name"],
                "port": s["port"],
                "members": [{"host": f"{a}:{s['port']}"} for a in addresses],
            }
            for s in sets
        ],
        "wap_mongos_instances": [
            {"name": "mongos", "port": MONGOS_PORT, "type": "mongos", "config_db": seeds(sets[0])}
        ],
        "mongodb_sharding_port": MONGOS_PORT,
        "mongodb_sharding_tls": tls,
        "mongodb_sharding_shards": [{"host": seeds(s)} for s in sets[1:]],
        "mongodb_users_port": MONGOS_PORT,
    }


def create(
    store: Store, settings: Settings, actor: Actor, project_id: str, data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the request, store the cluster and start its deployment: (cluster, job). Nothing is
    stored when the request or its job would be refused."""
    project = projects.require(store, actor, project_id, "operator")
    request = check(store, settings, project_id, data)
    variables = deploy_variables(project, request)
    job_request = {
        "playbook": PLAYBOOKS[request["topology"]],
        "host_ids": [h["_id"] for h in request["hosts"]],
        "credential_ids": request["credential_ids"],
        "extra_vars": variables,
    }
    jobs.validate_request(store, settings, actor, project_id, job_request)  # before anything
    package = packages(settings).get(request["mongodb_version"])
    cluster = {
        "_id": uuid.uuid4().hex,
        "project_id": project_id,
        "name": request["name"],
        "host_ids": job_request["host_ids"],
        "playbook": job_request["playbook"],
        "topology": request["topology"],
        "mongodb_version": request["mongodb_version"],
        "replica_set": request["replica_set"] if request["topology"] == "replicaset" else None,
        "port": request["port"] if request["topology"] == "replicaset" else MONGOS_PORT,
        "shards": request["shards"] if request["topology"] == "sharded" else None,
        "routers": request["routers"] if request["topology"] == "sharded" else None,
        "security": {"auth": request["auth"], "tls": request["tls"]},
        "credential_ids": request["credential_ids"],
        "deploy_vars": variables,
        "created_at": now(),
        "created_by": actor.username,
    }
    try:
        store.clusters.insert_one(cluster)
    except DuplicateKeyError:
        raise Conflict(
            f"a cluster named {request['name']!r} exists", {"name": ["already taken"]}
        ) from None
    audit.record(
        store, actor, "cluster.create", f"{project['name']}/{request['name']}",
        detail={"topology": request["topology"], "hosts": [h["name"] for h in request["hosts"]],
                "version": request["mongodb_version"], "package": bool(package)},
    )  # fmt: skip
    job = deploy(store, settings, actor, cluster)
    return cluster, job


def deploy(
    store: Store, settings: Settings, actor: Actor, cluster: dict[str, Any]
) -> dict[str, Any]:
    """Start the cluster's deploy job (again: converges to what it describes)."""
    package = packages(settings).get(cluster.get("mongodb_version") or "")
    platform_vars = {"mongodb_install_tarball": str(package)} if package else {}
    platform_vars.update(agent_vars(settings))
    return jobs.create_job(
        store, settings, actor, cluster["project_id"],
        {"playbook": cluster["playbook"], "host_ids": cluster["host_ids"],
         "credential_ids": cluster.get("credential_ids") or [],
         "extra_vars": cluster.get("deploy_vars") or {}, "cluster_id": cluster["_id"]},
        action=DEPLOY_ACTION,
        platform_vars=platform_vars or None,
    )  # fmt: skip


def agent_vars(settings: Settings) -> dict[str, Any]:
    """What deploy_agent.yml needs from the platform, for a cluster's deploy job; none (no
    agents) without a public URL or a wheelhouse holding the agent's wheel. The agents' backup
    commands stay off (wap_agent_backup_commands' default; webui/README.md says why)."""
    wheelhouse = settings.agent_wheelhouse
    if not settings.public_url or wheelhouse is None or not any(wheelhouse.glob("wap_agent-*.whl")):
        return {}
    found = {"wap_agent_platform_url": settings.public_url, "wap_agent_wheelhouse": str(wheelhouse)}
    if settings.public_url.startswith("https://") and settings.tls_ca is not None:
        found["wap_agent_platform_ca"] = str(settings.tls_ca)  # pinned by the agents
    return found


def last_deploy(store: Store, cluster_id: str, finished: bool = False) -> dict[str, Any] | None:
    query: dict[str, Any] = {"cluster_id": cluster_id, "cluster_action": DEPLOY_ACTION}
    if finished:
        query["status"] = {"$in": list(jobs.FINISHED)}
    found = list(store.jobs.find(query).sort("created_at", -1).limit(1))
    return found[0] if found else None


def cluster_state(store: Store, cluster: dict[str, Any]) -> str:
    """Any cluster's state: a cloud cluster's from its provision and teardown jobs
    (webui.services.cloud), one on registered hosts from its deploy jobs."""
    return cloud.state(store, cluster) if cluster.get("plan") else state(store, cluster)


def state(store: Store, cluster: dict[str, Any]) -> str:
    """deploying, running, deploy failed...; `registered` for a cluster made before the console
    deployed clusters itself (its jobs were started by hand)."""
    job = last_deploy(store, cluster["_id"])
    return STATES.get(job["status"], job["status"]) if job else "registered"


def members(store: Store, cluster: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """The cluster's members as its last finished deploy job reported them (host name, address,
    port, replica set, role, state, health), and that job; before any report, the members the
    cluster describes with state `unknown`."""
    hosts = {h["_id"]: h for h in store.hosts.find({"_id": {"$in": cluster.get("host_ids", [])}})}
    by_address = {h["address"]: h["name"] for h in hosts.values()}
    job = last_deploy(store, cluster["_id"], finished=True)
    converted = list(
        store.jobs.find(
            {"cluster_id": cluster["_id"], "cluster_action": "convert", "status": "successful"}
        )
        .sort("created_at", -1)
        .limit(1)
    )
    if converted and (job is None or converted[0]["created_at"] > job["created_at"]):
        job = converted[0]  # its report names the new sets' members
    reported: list[Any] = []
    if job is not None:
        stats = store.job_events.find_one({"job_id": job["_id"], "event": "playbook_on_stats"})
        found = ((stats or {}).get("artifact_data") or {}).get("wap_members")
        reported = found if isinstance(found, list) else []
    rows = []
    for member in reported:
        if not isinstance(member, dict):
            continue
        address, _, port = str(member.get("host", "")).rpartition(":")
        rows.append({
            "host": by_address.get(address, address), "address": address,
            "port": int(port) if port.isdigit() else None,
            "replica_set": member.get("replica_set"), "role": _role(cluster, member),
            "state": member.get("state") or "unknown", "health": member.get("health"),
        })  # fmt: skip
    if rows:
        rows = _as_recorded(cluster, rows, by_address)
        return sorted(rows, key=lambda r: (str(r["replica_set"]), r["host"])), job
    if cluster.get("taken_over"):  # as found when it was taken over (webui.services.takeover)
        return cluster["taken_over"]["members"], job
    return _described(cluster, [hosts[h] for h in cluster.get("host_ids", []) if h in hosts]), job


def _as_recorded(
    cluster: dict[str, Any], rows: list[dict[str, Any]], by_address: dict[str, str]
) -> list[dict[str, Any]]:
    """A sharded cluster's reported members as its recorded sets are now (pure): a member of a
    shard removed since the report left out, one of a shard added since listed with state
    `unknown` (a set's name may come back with other members)."""
    recorded = (cluster.get("deploy_vars") or {}).get("wap_replica_sets") or []
    if cluster.get("topology") != "sharded" or not recorded:
        return rows
    wanted = {(s["name"], str(m["host"])) for s in recorded for m in s.get("members") or []}
    kept = [r for r in rows if (r["replica_set"], f"{r['address']}:{r['port']}") in wanted]
    seen = {(r["replica_set"], f"{r['address']}:{r['port']}") for r in kept}
    for name, host in sorted(wanted - seen):
        address, _, port = host.rpartition(":")
        kept.append({
            "host": by_address.get(address, address), "address": address, "port": int(port),
            "replica_set": name, "role": "config server" if name == "cfg" else "shard member",
            "state": "unknown", "health": None,
        })  # fmt: skip
    return kept


def _role(cluster: dict[str, Any], member: dict[str, Any]) -> str:
    if cluster.get("topology") != "sharded":
        return "member"
    return "config server" if member.get("replica_set") == "cfg" else "shard member"


def _described(cluster: dict[str, Any], hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for host in hosts:
        if cluster.get("topology") == "sharded":
            sets = [("cfg", CONFIG_PORT, "config server")] + [
                (f"shard{n}", port, "shard member")
                for n, port in enumerate(_shard_ports(cluster.get("shards") or 0), start=1)
            ]
        else:
            sets = [(cluster.get("replica_set"), cluster.get("port"), "member")]
        rows += [
            {"host": host["name"], "address": host["address"], "port": port, "replica_set": name,
             "role": role, "state": "unknown", "health": None}
            for name, port, role in sets
        ]  # fmt: skip
    return rows


def routers(store: Store, cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """The mongos routers of a sharded cluster: the first `routers` hosts picked."""
    if cluster.get("topology") != "sharded":
        return []
    if cluster.get("taken_over"):
        return cluster["taken_over"]["routers"]
    ids = cluster.get("host_ids", [])[: cluster.get("routers") or 0]
    hosts = {h["_id"]: h for h in store.hosts.find({"_id": {"$in": ids}})}
    port = cluster.get("router_port") or MONGOS_PORT  # a converted set keeps MONGOS_PORT
    return [
        {"host": hosts[i]["name"], "address": hosts[i]["address"], "port": port}
        for i in ids
        if i in hosts
    ]


def connection_string(store: Store, cluster: dict[str, Any]) -> str:
    """How applications connect (no user or password in it: they add their own, and TLS options
    when the cluster requires TLS): the routers, or the members with the set's name."""
    if cluster.get("topology") == "sharded":
        seeds = [f"{r['address']}:{r['port']}" for r in routers(store, cluster)]
        options = []
    elif cluster.get("taken_over"):
        seeds = [f"{m['address']}:{m['port']}" for m in cluster["taken_over"]["members"]]
        options = [f"replicaSet={cluster['replica_set']}"]
    elif cluster.get("topology") == "replicaset":
        hosts = {h["_id"]: h for h in store.hosts.find({"_id": {"$in": cluster["host_ids"]}})}
        seeds = [
            f"{hosts[h]['address']}:{cluster['port']}" for h in cluster["host_ids"] if h in hosts
        ]
        options = [f"replicaSet={cluster['replica_set']}"]
    else:
        return ""
    if (cluster.get("security") or {}).get("tls"):
        options.append("tls=true")
    if not seeds:
        return ""
    return f"mongodb://{','.join(seeds)}/" + (f"?{'&'.join(options)}" if options else "")


def redeploy(store: Store, settings: Settings, actor: Actor, cluster_id: str) -> dict[str, Any]:
    """Deploy the cluster again (the console's button and `POST /clusters/{id}/deploy`)."""
    cluster, _ = cloud.get_cluster(store, actor, cluster_id, "operator")
    if cluster.get("taken_over"):
        raise Conflict("a cluster taken over was not deployed by WAP: there is nothing to redeploy")
    if cluster.get("plan") or not cluster.get("topology"):
        raise Conflict(
            "only a cluster created on registered hosts from its topology is deployed this way"
        )
    if state(store, cluster) == "deploying":
        raise Conflict("the cluster is being deployed: wait for its job to end")
    return deploy(store, settings, actor, cluster)


def jobs_of(store: Store, cluster_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The jobs that ran on a cluster, newest first (its page lists them)."""
    return list(store.jobs.find({"cluster_id": cluster_id}).sort("created_at", -1).limit(limit))


# A cluster's recorded topology follows the shard additions and removals and the conversions
# that ended well (webui.services.member_ops plans and starts them): its deploy variables, so a
# later deploy, rolling restart or upgrade knows every set, and what the console shows.
TOPOLOGY_ACTIONS = ("shard-add", "shard-remove", "convert")
SECURITY_VARS = ("mongodb_install_version", "mongodb_security_cluster_name",
                 "mongodb_security_cluster_auth", "mongodb_security_tls", "mongodb_config_auth",
                 "mongodb_config_key_file", "mongodb_config_tls_mode", "mongodb_replicaset_tls",
                 "mongodb_users_tls")  # fmt: skip


def recorded_topology(
    cluster: dict[str, Any], action: str, variables: dict[str, Any], addresses: dict[str, str]
) -> dict[str, Any]:
    """The cluster's fields after a successful shard addition, removal or conversion run with
    `variables` (`addresses`: host name -> address), pure."""
    deployed = dict(cluster.get("deploy_vars") or {})

    def members(hosts: list[str], port: int) -> list[dict[str, str]]:
        return [{"host": f"{addresses.get(h, h)}:{port}"} for h in hosts]

    def seeds(name: str, hosts: list[str], port: int) -> str:
        return name + "/" + ",".join(m["host"] for m in members(hosts, port))

    if action == "shard-add":
        name, port = variables["wap_shard_name"], int(variables["wap_shard_port"])
        hosts = variables["wap_shard_hosts"]
        added = {
            "wap_mongod_instances": {"name": name, "port": port, "replica_set": name,
                                     "cluster_role": "shardsvr"},
            "wap_replica_sets": {"name": name, "port": port, "members": members(hosts, port)},
            "mongodb_sharding_shards": {"host": seeds(name, hosts, port)},
        }  # fmt: skip
        for key, entry in added.items():
            deployed[key] = [*deployed.get(key, []), entry]
        return {"deploy_vars": deployed, "shards": (cluster.get("shards") or 0) + 1}
    if action == "shard-remove":
        name = variables["wap_shard_name"]
        deployed["wap_mongod_instances"] = [
            i for i in deployed.get("wap_mongod_instances", []) if i.get("replica_set") != name
        ]
        deployed["wap_replica_sets"] = [
            s for s in deployed.get("wap_replica_sets", []) if s["name"] != name
        ]
        deployed["mongodb_sharding_shards"] = [
            s
            for s in deployed.get("mongodb_sharding_shards", [])
            if (s.get("name") or s["host"].partition("/")[0]) != name
        ]
        return {"deploy_vars": deployed, "shards": max((cluster.get("shards") or 1) - 1, 0)}
    # convert: the replica set is the first shard of a sharded cluster
    hosts, name = variables["wap_convert_hosts"], variables["wap_convert_replica_set"]
    port, instance = int(variables["wap_convert_port"]), variables["wap_convert_instance"]
    cfg, cfg_port = variables["wap_convert_config_name"], int(variables["wap_convert_config_port"])
    cfg_hosts, routers = variables["wap_convert_config_hosts"], variables["wap_mongos_hosts"]
    router_port = int(variables["wap_convert_router_port"])
    tls = bool(deployed.get("mongodb_replicaset_tls"))
    sharded = {
        **{k: deployed[k] for k in SECURITY_VARS if k in deployed},
        "wap_sharded_hosts": list(dict.fromkeys(hosts + cfg_hosts)),
        "wap_mongos_hosts": routers,
        "wap_mongod_instances": [
            {"name": cfg, "port": cfg_port, "replica_set": cfg, "cluster_role": "configsvr"},
            {"name": instance, "port": port, "replica_set": name, "cluster_role": "shardsvr"}],
        "wap_replica_sets": [
            {"name": cfg, "port": cfg_port, "members": members(cfg_hosts, cfg_port)},
            {"name": name, "port": port, "members": members(hosts, port)}],
        "wap_mongos_instances": [{"name": "mongos", "port": router_port, "type": "mongos",
                                  "config_db": seeds(cfg, cfg_hosts, cfg_port)}],
        "mongodb_sharding_port": router_port,
        "mongodb_sharding_tls": tls,
        "mongodb_sharding_shards": [{"host": seeds(name, hosts, port)}],
        "mongodb_users_port": router_port,
    }  # fmt: skip
    return {"deploy_vars": sharded, "topology": "sharded", "playbook": PLAYBOOKS["sharded"],
            "replica_set": None, "port": router_port, "router_port": router_port, "shards": 1,
            "routers": len(routers)}  # fmt: skip


UPGRADE_ACTION = "upgrade"  # webui.services.member_ops' run of upgrade_cluster.yml


def recorded_version(cluster: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    """The cluster's fields after an upgrade to `variables`' release ended well: its version,
    and the one its deploy installs (a later "Deploy again" or added shard must not bring the
    old release back), pure."""
    version = variables.get("mongodb_upgrade_version")
    if not version:
        return {}
    deployed = dict(cluster.get("deploy_vars") or {})
    if "mongodb_install_version" in deployed:
        deployed["mongodb_install_version"] = version
    return {"mongodb_version": version, "deploy_vars": deployed}


def topology_job_finished(store: Store, job: dict[str, Any]) -> None:
    """After a job ends: a shard addition or removal, or a conversion, that ended well is
    recorded in its cluster (audited as cluster.topology); an upgrade that ended well, the
    release reached (audited as cluster.version)."""
    action = job.get("cluster_action")
    if action not in (*TOPOLOGY_ACTIONS, UPGRADE_ACTION) or job.get("status") != "successful":
        return
    cluster = store.clusters.find_one({"_id": job.get("cluster_id")})
    if cluster is None:
        return
    if action == UPGRADE_ACTION:
        update = recorded_version(cluster, job.get("extra_vars") or {})
        if update:
            store.clusters.update_one({"_id": cluster["_id"]}, {"$set": update})
            audit.record(store, audit.SYSTEM, "cluster.version", cluster["name"],
                         detail={"job_id": job["_id"], "was": cluster.get("mongodb_version"),
                                 "version": update["mongodb_version"]})  # fmt: skip
        return
    hosts = store.hosts.find({"project_id": cluster["project_id"]}, {"name": 1, "address": 1})
    addresses = {h["name"]: h["address"] for h in hosts}
    update = recorded_topology(cluster, job["cluster_action"], job.get("extra_vars") or {},
                               addresses)  # fmt: skip
    store.clusters.update_one({"_id": cluster["_id"]}, {"$set": update})
    audit.record(store, audit.SYSTEM, "cluster.topology", cluster["name"],
                 detail={"job_id": job["_id"], "action": job["cluster_action"],
                         "topology": update.get("topology", cluster.get("topology")),
                         "shards": update.get("shards")})  # fmt: skip

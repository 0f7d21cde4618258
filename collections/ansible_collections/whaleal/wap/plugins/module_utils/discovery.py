# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Discovering a deployment from one address: what the platform needs before taking it over.

``Discoverer`` reads (the I/O); the functions beside it are pure and unit-tested: which roles a
credential lacks, a replica set's members from its configuration and status, the security
settings from ``getCmdLineOpts``, the hosts involved.
"""

from __future__ import annotations

# What taking a deployment over needs, and the built-in roles that grant each (a role's
# privileges are in those that inherit it: clusterAdmin holds clusterMonitor, root clusterAdmin).
REQUIRED_ROLES = {"clusterMonitor": ("clusterMonitor", "clusterAdmin", "root", "__system")}


class DiscoveryRefused(Exception):
    """The deployment cannot be read as given (missing roles, not a MongoDB server...)."""


def missing_roles(roles: list[dict], inherited: list[dict] | None = None) -> list[str]:
    """The required roles (on admin) that neither the user's roles nor those they inherit grant.

    >>> missing_roles([{"role": "readAnyDatabase", "db": "admin"}])
    ['clusterMonitor']
    """
    held = {r.get("role") for r in [*roles, *(inherited or [])] if r.get("db") == "admin"}
    return [name for name, granting in REQUIRED_ROLES.items() if not held & set(granting)]


def security_of(opts: dict) -> dict:
    """Access control, internal authentication and TLS from ``getCmdLineOpts``' parsed tree."""
    parsed = opts.get("parsed") or {}
    security = parsed.get("security") or {}
    net = parsed.get("net") or {}
    tls = (net.get("tls") or {}).get("mode") or (net.get("ssl") or {}).get("mode") or "disabled"
    key_file = security.get("keyFile")
    cluster_auth = security.get("clusterAuthMode") or ("keyFile" if key_file else "none")
    auth = (
        security.get("authorization") == "enabled"
        or bool(key_file)
        or cluster_auth in ("x509", "sendX509", "sendKeyFile")
    ) and not security.get("transitionToAuth")
    return {
        "auth": auth,
        "transition_to_auth": bool(security.get("transitionToAuth")),
        "cluster_auth": cluster_auth,
        "key_file": key_file or "",
        "tls": tls,
    }


def set_members(config: dict, status: dict | None) -> list[dict]:
    """Each member of a replica set configuration with its state (from ``replSetGetStatus``)."""
    states = {m.get("name"): m for m in (status or {}).get("members", [])}
    members = []
    for member in config.get("members", []):
        seen = states.get(member["host"], {})
        members.append(
            {
                "host": member["host"],
                "state": seen.get("stateStr", "UNKNOWN"),
                "health": seen.get("health"),
                "priority": member.get("priority", 1),
                "votes": member.get("votes", 1),
                "hidden": bool(member.get("hidden", False)),
                "arbiter": bool(member.get("arbiterOnly", False)),
                "delay_seconds": int(
                    member.get("secondaryDelaySecs", member.get("slaveDelay", 0)) or 0
                ),
            }
        )
    return members


def split_seeds(connection: str) -> tuple[str, list[str]]:
    """``set/host1:port,host2:port`` -> ("set", ["host1:port", "host2:port"])."""
    name, _slash, hosts = connection.rpartition("/")
    return name, [h for h in hosts.split(",") if h]


def host_of(address: str) -> str:
    """The host part of ``host:port`` (brackets of an IPv6 address removed)."""
    return address.rpartition(":")[0].strip("[]") if ":" in address else address


def hosts_involved(report: dict) -> list[str]:
    """Every distinct host a process of the deployment runs on, sorted."""
    addresses = [m["host"] for s in report["sets"] for m in s["members"]]
    addresses += [r["host"] for r in report["routers"]]
    return sorted({host_of(a) for a in addresses})


def summary(report: dict) -> list[str]:
    """What was found, one line per fact, for a playbook's output or a page."""
    versions = sorted({m.get("version") or "?" for s in report["sets"] for m in s["members"]})
    security = report["security"]
    lines = [
        f"{report['topology']} {report.get('name') or ''}".rstrip()
        + f", MongoDB {', '.join(versions)}, FCV {report.get('fcv') or 'unknown'}",
        f"access control {'on' if security['auth'] else 'off'}"
        f" (internal: {security['cluster_auth']}), TLS {security['tls']}",
    ]
    for each in report["sets"]:
        members = ", ".join(f"{m['host']} {m['state']}" for m in each["members"])
        lines.append(f"{each['role']} {each['name']}: {members}")
    if report["routers"]:
        lines.append("routers: " + ", ".join(r["host"] for r in report["routers"]))
    lines.append("hosts: " + ", ".join(report["hosts"]))
    return lines


class Discoverer:
    """Reads a deployment through ``connect(address)``, a function that returns a pymongo client
    connected directly to one process with the credential and TLS settings to use."""

    def __init__(self, connect, errors=(Exception,)):
        self.connect = connect
        self.errors = errors
        self._clients: dict = {}

    def _client(self, address: str):
        if address not in self._clients:
            self._clients[address] = self.connect(address)
        return self._clients[address]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _admin(self, address: str, *args, **kwargs) -> dict:
        return self._client(address).admin.command(*args, **kwargs)

    def credential(self, address: str) -> dict:
        """The user the credential authenticates as and their roles; DiscoveryRefused naming
        the roles it lacks."""
        status = self._admin(address, "connectionStatus")["authInfo"]
        users = status.get("authenticatedUsers") or []
        roles = status.get("authenticatedUserRoles") or []
        user = f"{users[0]['user']}@{users[0]['db']}" if users else ""
        if not users:
            try:  # no user: only a deployment without access control answers this
                self._admin(address, "getCmdLineOpts")
                return {"user": "", "roles": []}
            except self.errors:
                pass
        inherited: list[dict] = []
        if roles:
            try:
                info = self._admin(address, "rolesInfo", roles)
                inherited = [r for role in info.get("roles", []) for r in role["inheritedRoles"]]
            except self.errors:
                inherited = []  # reading roles is a privilege of its own: the direct roles decide
        lacking = missing_roles(roles, inherited)
        if lacking:
            has = ", ".join(f"{r['role']}@{r['db']}" for r in roles) or "none"
            raise DiscoveryRefused(
                f"the credential ({user or 'no user: unauthenticated'}) lacks the roles needed to"
                f" take the deployment over: {', '.join(lacking)} on admin (its roles: {has}); "
                "grant them, or use another credential"
            )
        return {"user": user, "roles": [f"{r['role']}@{r['db']}" for r in roles]}

    def replica_set(self, seeds: list[str], role: str) -> dict:
        """A replica set's members, with each member's version, from any reachable seed."""
        last = None
        for seed in seeds:
            try:
                config = self._admin(seed, "replSetGetConfig")["config"]
                status = self._admin(seed, "replSetGetStatus")
                break
            except self.errors as exc:
                last = exc
        else:
            raise DiscoveryRefused(f"no member of {', '.join(seeds)} answered: {last}")
        members = set_members(config, status)
        for member in members:
            member["version"] = self._version(member["host"])
        return {"name": config["_id"], "role": role, "members": members}

    def _version(self, address: str) -> str:
        try:
            return self._admin(address, "buildInfo")["version"]
        except self.errors:
            return ""  # down or unreachable: its state says so

    def _fcv(self, address: str) -> str:
        try:
            answer = self._admin(address, "getParameter", 1, featureCompatibilityVersion=1)
        except self.errors:
            return ""
        return str((answer.get("featureCompatibilityVersion") or {}).get("version") or "")

    def _security(self, addresses: list[str]) -> dict:
        for address in addresses:
            try:
                return security_of(self._admin(address, "getCmdLineOpts"))
            except self.errors:
                continue
        return security_of({})

    def discover(self, address: str) -> dict:
        """The whole deployment ``address`` belongs to (see the module's RETURN for its shape)."""
        hello = self._admin(address, "hello")
        credential = self.credential(address)
        if hello.get("msg") == "isdbgrid":
            report = self._sharded(address)
        elif hello.get("setName"):
            rs = self.replica_set([address, *hello.get("hosts", [])], "replica set")
            report = {"topology": "replicaset", "name": rs["name"], "sets": [rs], "routers": []}
        else:
            member = {"host": address, "state": "STANDALONE", "health": 1, "priority": 0,
                      "votes": 0, "hidden": False, "arbiter": False, "delay_seconds": 0,
                      "version": self._version(address)}  # fmt: skip
            alone = {"name": "", "role": "standalone", "members": [member]}
            report = {"topology": "standalone", "name": "", "sets": [alone], "routers": []}
        data = [m for s in report["sets"] for m in s["members"] if not m["arbiter"]]
        primaries = [m["host"] for m in data if m["state"] in ("PRIMARY", "STANDALONE")]
        report["fcv"] = next(filter(None, map(self._fcv, [*primaries, address])), "")
        report["security"] = self._security([*(m["host"] for m in data), address])
        report["credential"] = credential
        report["hosts"] = hosts_involved(report)
        return report

    def _sharded(self, router: str) -> dict:
        shards = self._admin(router, "listShards")["shards"]
        config_seeds = self._admin(router, "getShardMap")["map"]["config"]
        name, seeds = split_seeds(config_seeds)
        sets = [self.replica_set(seeds, "config servers")]
        for shard in shards:
            sets.append(self.replica_set(split_seeds(shard["host"])[1], "shard"))
        # Each mongos records itself in config.mongos (_id host:port, mongoVersion): read it on
        # the config servers' primary.
        primary = next((m["host"] for m in sets[0]["members"] if m["state"] == "PRIMARY"), seeds[0])
        try:
            found = self._client(primary)["config"]["mongos"].find({}, {"mongoVersion": 1})
            routers = [{"host": d["_id"], "version": d.get("mongoVersion") or ""}
                       for d in sorted(found, key=lambda d: d["_id"])]  # fmt: skip
        except self.errors:
            routers = []
        try:  # the router given, as it names itself there: kept under the address given
            itself = self._admin(router, "serverStatus", repl=0, metrics=0, locks=0)["host"]
        except self.errors:
            itself = router
        if ":" not in itself:  # on port 27017 serverStatus names the host alone
            itself = f"{itself}:{router.rpartition(':')[2]}"
        routers = [r for r in routers if r["host"] not in (itself, router)]
        routers.append({"host": router, "version": self._version(router)})
        routers.sort(key=lambda r: r["host"])
        return {
            "topology": "sharded",
            "name": name,
            "sets": sets,
            "routers": routers,
        }

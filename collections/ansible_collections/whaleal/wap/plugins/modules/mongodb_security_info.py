#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_security_info
short_description: Plan enabling access control and TLS on a running MongoDB deployment
version_added: 0.2.0
description:
  - Reads the deployment behind O(login_host) and O(login_port) (a replica set member or a
    mongos), then what every member and router runs (C(getCmdLineOpts)) - access control
    (open, transitionToAuth or enforced) and the TLS mode - and plans the rolling passes that
    take it to access control with a keyFile and/or TLS the way MongoDB documents it without
    downtime (keyFile with transitionToAuth, the users, then enforced; allowTLS, preferTLS,
    requireTLS).
  - A process is reached the plainest way it accepts (without TLS, then with it; without
    credentials, then with them), so that a deployment in the middle of a pass is read too.
  - Only passes that some process still needs are planned; nothing planned means nothing to do.
  - Reads only; changes nothing.
author: WAP developers (@whaleal)
options:
  access_control:
    description: Plan access control (keyFile internal authentication and authorization).
    type: bool
    default: false
  tls_enabled:
    description: Plan TLS (O(tls_ca_file) and O(tls_certificate_key_file) are the files to use).
    type: bool
    default: false
  until:
    description:
      - V(end) plans every pass; V(transition) stops where every process accepts both ways
        (transitionToAuth with the users made, preferTLS), so that clients can move first.
    type: str
    choices: [end, transition]
    default: end
  routers:
    description:
      - A sharded cluster's routers as host:port, read instead of the names they record in
        C(config.mongos) (which other hosts may not resolve).
    type: list
    elements: str
extends_documentation_fragment:
  - whaleal.wap.mongodb
attributes:
  check_mode:
    support: full
    description: Reads only, in check mode too.
  diff_mode:
    support: none
    description: No diff.
"""

EXAMPLES = r"""
- name: Plan access control and TLS on a running replica set
  whaleal.wap.mongodb_security_info:
    access_control: true
    tls_enabled: true
    login_user: admin
    login_password: "{{ admin_password }}"
    tls_ca_file: /etc/mongodb/tls/ca.pem
    tls_certificate_key_file: /etc/mongodb/tls/server.pem
  register: security
"""

RETURN = r"""
processes:
  description: Every member and router with what it runs (host, set, auth, tls).
  returned: success
  type: list
  elements: dict
  sample: [{host: "10.0.0.11:27017", set: rs0, auth: open, tls: disabled}]
topology:
  description: V(replicaset) or V(sharded).
  returned: success
  type: str
plan:
  description:
    - steps, each with name (auth_transition, users, auth_enforce, allowTLS, preferTLS,
      requireTLS), description, auth_level and tls_mode to write, and login and tls (how the
      modules reach the processes during that step); the auth_level and tls_mode at the end.
  returned: success
  type: dict
lines:
  description: The plan as lines, each step with the processes in order.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.discovery import (
    Discoverer,
    DiscoveryRefused,
    security_of,
)
from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    MongoClient,
    PyMongoError,
    client_options,
    mongodb_argument_spec,
    require_pymongo,
)
from ansible_collections.whaleal.wap.plugins.module_utils.security_plan import (
    AUTH_LEVELS,
    TLS_LEVELS,
    SecurityRefused,
    connection_ways,
    describe,
    levels_of,
    plan_security,
)

PROBE_TIMEOUT_MS = 4000


class Prober:
    """Reaches each process the plainest way it accepts and keeps that client."""

    def __init__(self, params: dict):
        self.params = params
        self.errors: dict[str, str] = {}
        self.clients: dict = {}

    def connect(self, address: str):
        if address not in self.clients:
            self.clients[address] = self._connect(address)
        return self.clients[address]

    def _connect(self, address: str):
        host, port = address.rsplit(":", 1)
        params = self.params
        files = bool(params.get("tls_ca_file") or params.get("tls_certificate_key_file"))
        last = None
        ways = connection_ways(files or params["tls"], bool(params["login_user"]))
        for use_tls, use_auth in ways:
            way = dict(params, tls=use_tls)
            if not use_tls:
                way.update(tls_ca_file=None, tls_certificate_key_file=None)
            options = client_options(
                way, host=host.strip("[]"), port=int(port), authenticate=use_auth
            )
            options.update(
                serverSelectionTimeoutMS=PROBE_TIMEOUT_MS, connectTimeoutMS=PROBE_TIMEOUT_MS
            )
            client = None
            try:
                client = MongoClient(**options)
                client.admin.command("getCmdLineOpts")
            except (PyMongoError, OSError) as exc:  # OSError: TLS files not placed yet
                last = exc
                if client is not None:
                    client.close()
                continue
            return client
        self.errors[address] = str(last).split(", Timeout:", maxsplit=1)[0]
        raise last


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(
            access_control=dict(type="bool", default=False),
            tls_enabled=dict(type="bool", default=False),
            until=dict(type="str", choices=["end", "transition"], default="end"),
            routers=dict(type="list", elements="str"),
        ),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    require_pymongo(module)
    params = module.params
    where = f"{params['login_host']}:{params['login_port']}"
    prober = Prober(params)
    reader = Discoverer(prober.connect, errors=(PyMongoError,))
    try:
        found = reader.discover(where)
        if found["topology"] == "sharded" and params["routers"]:
            found["routers"] = [{"host": r} for r in params["routers"]]
        processes = []
        for group in found["sets"]:
            for member in group["members"]:
                processes.append({"host": member["host"], "set": group["name"]})
        for router in found.get("routers", []):
            processes.append({"host": router["host"], "set": ""})
        for process in processes:
            try:
                answer = prober.connect(process["host"]).admin.command("getCmdLineOpts")
            except PyMongoError as exc:
                process["error"] = prober.errors.get(process["host"]) or str(exc)
                process["auth"] = process["tls"] = 0
                continue
            process["auth"], process["tls"] = levels_of(security_of(answer))
    except (DiscoveryRefused, PyMongoError) as exc:
        module.fail_json(msg=f"Could not read the deployment at {where}: {exc}")
    finally:
        reader.close()
    sharded = found["topology"] == "sharded"
    who = "the sharded cluster" if sharded else f"replica set {found['name']}"
    try:
        plan = plan_security(
            processes, params["access_control"], params["tls_enabled"], params["until"], who
        )
    except SecurityRefused as exc:
        module.fail_json(msg=f"Cannot secure {who}: {exc}; nothing changed", processes=processes)
    shown = [
        {
            "host": p["host"],
            "set": p["set"],
            "auth": AUTH_LEVELS[p["auth"]],
            "tls": TLS_LEVELS[p["tls"]],
        }
        for p in processes
    ]
    module.exit_json(
        changed=False,
        processes=shown,
        topology=found["topology"],
        plan=plan,
        lines=describe(plan, processes, who),
    )


if __name__ == "__main__":
    main()

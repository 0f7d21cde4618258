#!/usr/bin/python
# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: mongodb_deployment_info
short_description: Discover a whole MongoDB deployment from one of its addresses
version_added: 0.2.0
description:
  - Connects to O(login_host) and O(login_port) (a replica set member or a mongos router) and
    reads the deployment it belongs to, the replica set's members (state, priority, votes,
    hidden, arbiter, delay, each one's version), or for a sharded cluster its config servers,
    its shards' members and its routers; the feature compatibility version; access control,
    internal authentication and TLS from C(getCmdLineOpts); the hosts involved.
  - The credential must hold clusterMonitor on admin (or a role that includes it, such as
    clusterAdmin or root); otherwise the module fails naming the roles missing and those held.
  - Reads only; changes nothing.
author: WAP developers (@whaleal)
options: {}
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
- name: Find what runs behind one address before taking it over
  whaleal.wap.mongodb_deployment_info:
    login_host: db1.example.com
    login_port: 27017
    login_user: monitor
    login_password: "{{ monitor_password }}"
    tls: true
    tls_ca_file: /etc/mongodb/tls/ca.pem
  register: found
"""

RETURN = r"""
deployment:
  description: The deployment found.
  returned: success
  type: dict
  contains:
    topology:
      description: V(replicaset), V(sharded) or V(standalone).
      type: str
    name:
      description: The replica set's name, or a sharded cluster's config server set's name.
      type: str
    fcv:
      description: The feature compatibility version.
      type: str
    security:
      description: auth (bool), transition_to_auth (bool), cluster_auth, key_file and tls (the
        net.tls mode), as the first member that answered runs.
      type: dict
    sets:
      description: Each replica set (name, role and members; each member has host, state,
        health, priority, votes, hidden, arbiter, delay_seconds and version).
      type: list
      elements: dict
    routers:
      description: The mongos routers (host, version).
      type: list
      elements: dict
    hosts:
      description: The distinct hosts that run a process of the deployment.
      type: list
      elements: str
    credential:
      description: The user the credential authenticated as and its roles.
      type: dict
  sample:
    topology: replicaset
    name: rs0
    fcv: "7.0"
    hosts: [db1.example.com, db2.example.com, db3.example.com]
summary:
  description: What was found, one line per fact.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.whaleal.wap.plugins.module_utils.discovery import (
    Discoverer,
    DiscoveryRefused,
    summary,
)
from ansible_collections.whaleal.wap.plugins.module_utils.mongodb import (
    MONGODB_REQUIRED_TOGETHER,
    PyMongoError,
    connect,
    mongodb_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=mongodb_argument_spec(),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    params = module.params
    conn = connect(module)
    where = f"{params['login_host']}:{params['login_port']}"
    reader = Discoverer(conn.member_client, errors=(PyMongoError,))
    try:
        found = reader.discover(where)
    except DiscoveryRefused as exc:
        module.fail_json(msg=f"Cannot take over the deployment at {where}: {exc}")
    except PyMongoError as exc:
        module.fail_json(msg=f"Could not read the deployment at {where}: {exc}")
    finally:
        reader.close()
        conn.close()
    module.exit_json(changed=False, deployment=found, summary=summary(found))


if __name__ == "__main__":
    main()

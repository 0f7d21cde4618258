# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Documentation of the connection options in plugins/module_utils/mongodb.py."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - The host of the mongod or mongos to connect to.
      - With O(localhost_exception=true) it must be V(localhost), V(127.0.0.1) or V(::1).
    type: str
    default: localhost
  login_port:
    description: The port of the mongod or mongos to connect to.
    type: int
    default: 27017
  login_user:
    description:
      - The user to authenticate as. Leave unset on a deployment without access control.
    type: str
  login_password:
    description: The password of O(login_user).
    type: str
  login_database:
    description:
      - The database that holds O(login_user) (the authentication database).
      - V($external) authenticates with the client certificate (MONGODB-X509).
    type: str
    default: admin
  localhost_exception:
    description:
      - When the credentials do not authenticate and O(login_host) is local, carry on without
        authentication so that MongoDB's localhost exception applies. This is how the first
        user of a deployment started with access control is created, and how a replica set
        started with a keyFile is initiated before that user exists.
      - Once a user exists the exception is closed, and commands fail with a message saying
        that O(login_password) is wrong.
    type: bool
    default: false
  replica_set:
    description:
      - The replica set name. When set, the driver discovers the set from O(login_host) and
        talks to its primary; otherwise the connection is direct to O(login_host).
    type: str
  direct_connection:
    description: Connect to O(login_host) only, without discovering the rest of the deployment.
    type: bool
    default: true
  tls:
    description: Connect over TLS.
    type: bool
    default: false
  tls_ca_file:
    description: The CA bundle that signed the server certificates. Implies O(tls=true).
    type: path
  tls_certificate_key_file:
    description:
      - A PEM file with the client certificate and its key, for servers that require client
        certificates or for MONGODB-X509 authentication. Implies O(tls=true).
    type: path
  tls_allow_invalid_hostnames:
    description: Do not check that the server certificate names O(login_host).
    type: bool
    default: false
  connect_timeout:
    description: Seconds to wait for the server to answer when connecting.
    type: int
    default: 10
requirements:
  - pymongo >= 4.0 on the host that runs the module
notes:
  - Passwords are never returned nor logged.
"""

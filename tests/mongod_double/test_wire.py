"""Wire protocol and handshake fidelity, driven by unmodified pymongo and by raw sockets."""

from __future__ import annotations

import socket
import struct

import bson
import pytest
from bson.int64 import Int64
from bson.objectid import ObjectId
from pymongo.errors import OperationFailure

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013


def _send(sock: socket.socket, op_code: int, payload: bytes, request_id: int = 7) -> None:
    sock.sendall(struct.pack("<iiii", 16 + len(payload), request_id, 0, op_code) + payload)


def _recv(sock: socket.socket) -> tuple[int, int, bytes]:
    header = b""
    while len(header) < 16:
        header += sock.recv(16 - len(header))
    length, _, response_to, op_code = struct.unpack("<iiii", header)
    body = b""
    while len(body) < length - 16:
        body += sock.recv(length - 16 - len(body))
    return op_code, response_to, body


def _op_msg(doc: dict, flags: int = 0, sequences: dict | None = None) -> bytes:
    payload = struct.pack("<I", flags) + b"\x00" + bson.encode(doc)
    for name, docs in (sequences or {}).items():
        section = name.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
        payload += b"\x01" + struct.pack("<i", 4 + len(section)) + section
    return payload


def _msg_reply(body: bytes) -> dict:
    assert body[4] == 0
    return bson.decode(body[5:])


def test_hello_shape(client):
    """hello reply fields and types.

    Source: https://www.mongodb.com/docs/manual/reference/command/hello/ (Output).
    """
    reply = client.admin.command("hello")
    assert reply["isWritablePrimary"] is True
    assert isinstance(reply["topologyVersion"]["processId"], ObjectId)
    assert isinstance(reply["topologyVersion"]["counter"], Int64)
    assert reply["maxBsonObjectSize"] == 16 * 1024 * 1024
    assert reply["maxMessageSizeBytes"] == 48_000_000
    assert reply["maxWriteBatchSize"] == 100_000
    assert reply["logicalSessionTimeoutMinutes"] == 30
    assert reply["minWireVersion"] == 0
    assert reply["maxWireVersion"] == 21  # 7.0
    assert reply["readOnly"] is False
    assert isinstance(reply["connectionId"], int)
    assert "localTime" in reply
    assert "compression" not in reply
    assert reply["ok"] == 1.0


@pytest.mark.parametrize(("version", "wire"), [("6.0.19", 17), ("8.0.4", 25)])
def test_max_wire_version_follows_the_built_version(launcher, version, wire):
    """maxWireVersion is 17 for 6.0 and 25 for 8.0.

    Source: https://www.mongodb.com/docs/drivers/about-compatibility/ and the server's
    wire_version.h (WireVersion::WIRE_VERSION_60 = 17, WIRE_VERSION_80 = 25).
    """
    node = launcher.start(version=version)
    client = node.client()
    assert client.admin.command("hello")["maxWireVersion"] == wire
    assert client.server_info()["version"] == version


def test_legacy_op_query_hello_gets_op_reply(node):
    """The legacy OP_QUERY handshake on admin.$cmd is answered with OP_REPLY; other OP_QUERY
    commands fail with UnsupportedOpQueryCommand (352) since 6.0.

    Source: https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/#op_query and
    https://www.mongodb.com/docs/manual/legacy-opcodes/.
    """
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        query = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1)
        _send(sock, OP_QUERY, query + bson.encode({"isMaster": 1, "helloOk": True}), 41)
        op_code, response_to, body = _recv(sock)
        assert (op_code, response_to) == (OP_REPLY, 41)
        _flags, cursor_id, starting_from, returned = struct.unpack_from("<iqii", body)
        assert (cursor_id, starting_from, returned) == (0, 0, 1)
        reply = bson.decode(body[20:])
        assert reply["ismaster"] is True and reply["helloOk"] is True
        _send(sock, OP_QUERY, query + bson.encode({"find": "c"}), 42)
        _, _, body = _recv(sock)
        reply = bson.decode(body[20:])
        assert reply["ok"] == 0 and reply["code"] == 352


def test_op_msg_document_sequence_and_more_to_come(node):
    """OP_MSG kind 1 sections carry the documents; moreToCome gets no reply.

    Source: https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/#op_msg
    """
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        _send(
            sock,
            OP_MSG,
            _op_msg(
                {"insert": "seq", "$db": "test"}, sequences={"documents": [{"_id": 1}, {"_id": 2}]}
            ),
            1,
        )
        op_code, response_to, body = _recv(sock)
        assert (op_code, response_to) == (OP_MSG, 1)
        assert _msg_reply(body)["n"] == 2
        more_to_come = 1 << 1
        _send(
            sock,
            OP_MSG,
            _op_msg(
                {"insert": "seq", "$db": "test", "writeConcern": {"w": 0}},
                flags=more_to_come,
                sequences={"documents": [{"_id": 3}]},
            ),
            2,
        )
        _send(sock, OP_MSG, _op_msg({"count": "seq", "$db": "test"}), 3)
        op_code, response_to, body = _recv(sock)
        assert response_to == 3  # no reply was sent for request 2
        assert _msg_reply(body)["n"] == 3


def test_op_msg_without_db_is_rejected(node):
    """OP_MSG requests require $db.

    Source: https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/#op_msg
    (the command body's ``$db`` field).
    """
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        _send(sock, OP_MSG, _op_msg({"ping": 1}), 5)
        _, _, body = _recv(sock)
        reply = _msg_reply(body)
        assert reply["ok"] == 0 and reply["code"] == 40571


def test_unknown_command_is_command_not_found(client):
    """Unknown commands answer CommandNotFound (59).

    Source: https://www.mongodb.com/docs/manual/reference/error-codes/ (59 CommandNotFound).
    """
    for name in ("xyz", "mapReduce", "getLastError", "compact"):
        with pytest.raises(OperationFailure) as info:
            client.test.command(name)
        assert info.value.details == {
            "ok": 0.0,
            "errmsg": f"no such command: '{name}'",
            "code": 59,
            "codeName": "CommandNotFound",
        }


def test_admin_only_commands_refuse_other_databases(client):
    """Admin-only commands run elsewhere fail with Unauthorized (13).

    Source: https://www.mongodb.com/docs/manual/reference/command/listDatabases/ ("must run
    against the admin database").
    """
    with pytest.raises(OperationFailure) as info:
        client.test.command("listDatabases")
    assert info.value.code == 13
    assert "may only be run against the admin database" in str(info.value)


def test_whatsmyuri_and_connection_status(client):
    """whatsmyuri returns the client's address; connectionStatus the authInfo document.

    Source: https://www.mongodb.com/docs/manual/reference/command/connectionStatus/
    """
    you = client.admin.command("whatsmyuri")["you"]
    assert you.startswith("127.0.0.1:")
    status = client.admin.command("connectionStatus")
    assert status["authInfo"] == {"authenticatedUsers": [], "authenticatedUserRoles": []}

"""MongoDB wire protocol: message framing for OP_MSG, legacy OP_QUERY and OP_REPLY.

Reference: https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/
Compression (OP_COMPRESSED) is not implemented, so ``hello`` never advertises a compressor.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import bson
from bson.codec_options import CodecOptions

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013

# OP_MSG flag bits.
CHECKSUM_PRESENT = 1 << 0
MORE_TO_COME = 1 << 1
EXHAUST_ALLOWED = 1 << 16
# Bits 0-15 must be understood by the receiver; unknown required bits are an error.
REQUIRED_BITS_MASK = 0xFFFF
KNOWN_REQUIRED_BITS = CHECKSUM_PRESENT | MORE_TO_COME

HEADER = struct.Struct("<iiii")
MAX_MESSAGE_SIZE = 48_000_000
CODEC = CodecOptions(document_class=dict, tz_aware=False)


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid message: the connection is closed."""


@dataclass
class Request:
    op_code: int
    request_id: int
    flags: int
    body: dict
    sequences: dict[str, list[dict]] = field(default_factory=dict)
    full_collection_name: str = ""

    @property
    def more_to_come(self) -> bool:
        return self.op_code == OP_MSG and bool(self.flags & MORE_TO_COME)


def _cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\x00", pos)
    return data[pos:end].decode("utf-8"), end + 1


def _document(data: bytes, pos: int) -> tuple[dict, int]:
    if pos + 4 > len(data):
        raise ProtocolError("truncated BSON document")
    (size,) = struct.unpack_from("<i", data, pos)
    if size < 5 or pos + size > len(data):
        raise ProtocolError("invalid BSON document length")
    return bson.decode(data[pos : pos + size], CODEC), pos + size


def parse_op_msg(request_id: int, body: bytes) -> Request:
    (flags,) = struct.unpack_from("<I", body, 0)
    unknown = flags & REQUIRED_BITS_MASK & ~KNOWN_REQUIRED_BITS
    if unknown:
        raise ProtocolError(f"unsupported required OP_MSG flag bits {unknown:#x}")
    end = len(body) - 4 if flags & CHECKSUM_PRESENT else len(body)
    pos = 4
    command: dict | None = None
    sequences: dict[str, list[dict]] = {}
    while pos < end:
        kind = body[pos]
        pos += 1
        if kind == 0:
            if command is not None:
                raise ProtocolError("OP_MSG with more than one body section")
            command, pos = _document(body, pos)
        elif kind == 1:
            (size,) = struct.unpack_from("<i", body, pos)
            section_end = pos + size
            identifier, cursor = _cstring(body, pos + 4)
            docs = []
            while cursor < section_end:
                doc, cursor = _document(body, cursor)
                docs.append(doc)
            sequences[identifier] = docs
            pos = section_end
        else:
            raise ProtocolError(f"unknown OP_MSG section kind {kind}")
    if command is None:
        raise ProtocolError("OP_MSG without a body section")
    return Request(OP_MSG, request_id, flags, command, sequences)


def parse_op_query(request_id: int, body: bytes) -> Request:
    (flags,) = struct.unpack_from("<i", body, 0)
    name, pos = _cstring(body, 4)
    pos += 8  # numberToSkip, numberToReturn
    query, _ = _document(body, pos)
    return Request(OP_QUERY, request_id, flags, query, full_collection_name=name)


def parse(op_code: int, request_id: int, body: bytes) -> Request:
    if op_code == OP_MSG:
        return parse_op_msg(request_id, body)
    if op_code == OP_QUERY:
        return parse_op_query(request_id, body)
    raise ProtocolError(f"unsupported opcode {op_code}")


def encode_op_msg(request_id: int, response_to: int, doc: dict, flags: int = 0) -> bytes:
    payload = struct.pack("<I", flags) + b"\x00" + bson.encode(doc, codec_options=CODEC)
    return HEADER.pack(16 + len(payload), request_id, response_to, OP_MSG) + payload


def encode_op_reply(request_id: int, response_to: int, doc: dict) -> bytes:
    payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(doc, codec_options=CODEC)
    return HEADER.pack(16 + len(payload), request_id, response_to, OP_REPLY) + payload

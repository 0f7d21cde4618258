"""Compression as mongodump applies it: gzip (``--gzip``: the whole stream of an archive, each
file of a directory dump with ``.gz``), and zstd as our own option (``.zst``).

Reading recognises the stream by its first bytes, so an archive restores whichever way it was
written; ``--gzip`` on restore is accepted for mongorestore's scripts but not required.
"""

from __future__ import annotations

import gzip
import io
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SUFFIXES = {"gzip": ".gz", "zstd": ".zst", None: ""}
CHOICES = ("gzip", "zstd")


class CompressionError(ValueError):
    pass


class _Closer(io.RawIOBase):
    """A writable wrapper whose close() finishes the compressor without closing ``out``."""

    def __init__(self, writer, finish) -> None:
        self._writer = writer
        self._finish = finish

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._writer.write(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._finish()
        super().close()


def compress_writer(out: BinaryIO, compression: str | None, level: int | None = None) -> BinaryIO:
    """A binary writer that compresses into ``out``; closing it ends the compressed stream and
    leaves ``out`` open (the caller owns it)."""
    if compression is None:
        return _Closer(out, lambda: None)  # type: ignore[return-value]
    if compression == "gzip":
        writer = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6 if level is None else level)
        return _Closer(writer, writer.close)  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        compressor = zstandard.ZstdCompressor(level=3 if level is None else level)
        writer = compressor.stream_writer(out, closefd=False)
        return _Closer(writer, writer.close)  # type: ignore[return-value]
    raise CompressionError(f"unknown compression {compression!r}: expected one of {CHOICES}")


class _Prefixed(io.RawIOBase):
    """A stream with bytes already read put back in front of it."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def detect(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def decompress_reader(stream: BinaryIO) -> tuple[BinaryIO, str | None]:
    """The stream's content, decompressed if it starts as gzip or zstd; and which it was."""
    head = b""
    while len(head) < 4:
        chunk = stream.read(4 - len(head))
        if not chunk:
            break
        head += chunk
    kind = detect(head)
    raw = io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 16)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), kind  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return io.BufferedReader(reader, buffer_size=1 << 16), kind  # type: ignore[return-value]
    return raw, None  # type: ignore[return-value]

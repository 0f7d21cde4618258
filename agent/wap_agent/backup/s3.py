"""Snapshots streamed to and from S3, never staged whole on local disk.

`S3Upload` is a write-only binary file: what is written is cut into parts sent with S3's multipart
upload, several at once, while the writer goes on. Memory is bounded: at most `max_in_flight` parts
are held (one being filled, the others in flight); a write waits while they are all out. The object
appears only when `complete()` succeeds (S3 makes a multipart object visible at its completion);
any failure, and a `close()` without `complete()`, aborts the upload, so that no part is left stored
(and billed) and no half snapshot is ever listed. As a context manager it completes on a clean exit
and aborts when the block raises.

Part sizes: S3 takes at most 10,000 parts of 5 MiB to 5 GiB (the last may be smaller). The first
size comes from the expected size with room to spare (`part_size_for`); when more arrives than
was expected, later parts grow with what was written, so that the count stays under 10,000
whatever the estimate's error.

`S3Download` is the restore side: a read-only binary file over an object's body, which resumes
where it was (a ranged GET) when the connection breaks mid-object.

boto3 is imported by `client()` alone: a caller that brings its own client needs only botocore's
exceptions, which come with it.
"""

from __future__ import annotations

import hashlib
import io
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3's smallest part but the last
MAX_PART = 5 * 1024 * MiB  # S3's largest part
MAX_PARTS = 10_000  # S3's most parts in one upload
# The share of the part budget the expected size may use; the rest is room for a wrong estimate.
ESTIMATE_SHARE = 0.5
# Once past the estimate, a part is at least this fraction of what was written before it: the
# total then grows by that fraction per part, far past any estimate within the budget.
GROWTH = 1 / 300


class S3TransferError(OSError):
    """An upload or download failed; the message names the object and S3's reason."""


def client(
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    max_pool_connections: int = 16,
    max_attempts: int = 5,
    timeout: float | None = None,
) -> Any:
    """An S3 client; keys not given come from boto3's usual chain (environment, instance role).
    `timeout`: seconds to connect and to wait for an answer (botocore's default is 60)."""
    import boto3
    from botocore.config import Config

    config = Config(
        max_pool_connections=max_pool_connections,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        **({"connect_timeout": timeout, "read_timeout": timeout} if timeout else {}),
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=config,
    )


def _round_mib(size: float) -> int:
    return int(-(-size // MiB) * MiB)


def part_size_for(expected_size: int | None) -> int:
    """The first part size for an object of about `expected_size` bytes (None: unknown)."""
    if not expected_size or expected_size <= 0:
        return 8 * MiB
    wanted = _round_mib(expected_size / (MAX_PARTS * ESTIMATE_SHARE))
    return max(MIN_PART, min(MAX_PART, wanted))


def next_part_size(first: int, expected_size: int | None, cut: int) -> int:
    """The size of the next part, `cut` bytes having been sent in parts: `first` while within the
    expected size (or, unknown, half the budget of `first`-sized parts), then a fraction of what
    was sent, so that the total may grow far past the estimate within 10,000 parts."""
    planned = expected_size or first * MAX_PARTS * ESTIMATE_SHARE
    if cut < planned:
        return first
    return max(first, min(MAX_PART, _round_mib(cut * GROWTH)))


def failure_reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        error = response["Error"]
        return f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
    return f"{type(exc).__name__}: {exc}"


class S3Upload(io.RawIOBase):
    """A write-only binary file streaming to s3://bucket/key (see the module's note)."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        *,
        expected_size: int | None = None,
        part_size: int | None = None,
        max_in_flight: int = 4,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.s3, self.bucket, self.key = s3, bucket, key
        self.part_size = part_size or part_size_for(expected_size)
        if not MIN_PART <= self.part_size <= MAX_PART:
            raise ValueError(f"part size {self.part_size} is outside S3's {MIN_PART}..{MAX_PART}")
        self.expected_size = expected_size
        self.max_in_flight = max_in_flight
        self._extra = {"ContentType": content_type, "Metadata": dict(metadata or {})}
        self._buffer = bytearray()
        self._sha256 = hashlib.sha256()
        self._written = 0  # bytes accepted by write()
        self._cut = 0  # bytes cut into parts
        self._upload_id: str | None = None
        self._parts: dict[int, str] = {}  # part number -> ETag
        self._numbered = 0  # the last part number given
        self._futures: set[Future[None]] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._done = False
        self.result: dict[str, Any] = {}  # what complete() returned
        self.peak_held = 0  # most bytes held in memory at once (parts in flight and the buffer)
        self._in_flight_bytes = 0

    # -- the file interface -------------------------------------------------------------------

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        if self.closed or self._done:
            raise ValueError(f"s3://{self.bucket}/{self.key}: write after the upload ended")
        self._raise_failure()
        view = memoryview(data).cast("B")
        self._buffer += view
        self._sha256.update(view)
        self._written += len(view)
        self._note_held()
        while len(self._buffer) >= self._next_part_size():
            size = self._next_part_size()
            with memoryview(self._buffer) as held:
                chunk = bytes(held[:size])  # one copy (a slice of the bytearray would be two)
            del self._buffer[:size]
            self._send(chunk)
        return len(view)

    def complete(self) -> dict[str, Any]:
        """Send what is left, wait for every part and complete the upload: only now does the
        object exist. Returns its size, SHA-256, ETag and part count. Aborts on any failure."""
        if self._done:
            raise ValueError(f"s3://{self.bucket}/{self.key}: the upload already ended")
        try:
            self._raise_failure()
            if self._upload_id is None:  # everything fits one request: a single PUT is atomic
                answer = self.s3.put_object(
                    Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer), **self._extra
                )
                parts = 0
            else:
                if self._buffer:
                    self._send(bytes(self._buffer))
                self._buffer.clear()
                self._drain(0)
                parts = len(self._parts)
                if sorted(self._parts) != list(range(1, self._numbered + 1)):
                    raise S3TransferError(
                        f"s3://{self.bucket}/{self.key}: parts {sorted(self._parts)} stored of"
                        f" 1 to {self._numbered}"
                    )
                answer = self.s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={
                        "Parts": [
                            {"PartNumber": n, "ETag": tag} for n, tag in sorted(self._parts.items())
                        ]
                    },
                )
        except BaseException as exc:
            self.abort()
            if isinstance(exc, S3TransferError):
                raise
            raise S3TransferError(
                f"upload to s3://{self.bucket}/{self.key} failed: {failure_reason(exc)}"
            ) from exc
        self._done = True
        self._shutdown()
        super().close()
        self.result = {
            "bucket": self.bucket,
            "key": self.key,
            "size": self._written,
            "sha256": self._sha256.hexdigest(),
            "etag": str(answer.get("ETag", "")).strip('"'),
            "parts": parts,
        }
        return self.result

    def abort(self) -> None:
        """Stop: cancel the parts not started, wait for those in flight, abort the upload so that
        S3 drops every stored part. Safe to call more than once."""
        if self._done:
            return
        self._done = True
        for future in self._futures:
            future.cancel()
        self._shutdown()
        if self._upload_id is not None:
            # S3 may keep a part that was in flight during the abort: abort until none is listed.
            for _ in range(3):
                try:
                    self.s3.abort_multipart_upload(
                        Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                    )
                    listed = self.s3.list_parts(
                        Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                    )
                except Exception as exc:  # NoSuchUpload: aborted and gone
                    if "NoSuchUpload" in failure_reason(exc):
                        break
                    continue
                if not listed.get("Parts"):
                    break
        self._buffer.clear()
        super().close()

    def close(self) -> None:
        """Closing without `complete()` is giving up: the upload is aborted."""
        if not self._done:
            self.abort()
        super().close()

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None and not self._done:
            self.complete()
        else:
            self.abort()

    @property
    def written(self) -> int:
        return self._written

    # -- parts --------------------------------------------------------------------------------

    def _next_part_size(self) -> int:
        return next_part_size(self.part_size, self.expected_size, self._cut)

    def _note_held(self) -> None:
        held = len(self._buffer) + self._in_flight_bytes
        self.peak_held = max(self.peak_held, held)

    def _send(self, chunk: bytes) -> None:
        if self._upload_id is None:
            try:
                started = self.s3.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, **self._extra
                )
            except Exception as exc:
                where = f"s3://{self.bucket}/{self.key}"
                raise S3TransferError(
                    f"cannot start the upload to {where}: {failure_reason(exc)}"
                ) from exc
            self._upload_id = started["UploadId"]
            self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="s3-part")
        self._numbered += 1
        number = self._numbered
        if number > MAX_PARTS:
            raise S3TransferError(
                f"s3://{self.bucket}/{self.key}: more than {MAX_PARTS} parts; give a larger"
                " expected size"
            )
        self._drain(self.max_in_flight - 1)  # room for this part: memory stays bounded
        self._cut += len(chunk)
        assert self._pool is not None
        with self._lock:
            self._in_flight_bytes += len(chunk)
        self._note_held()
        self._futures.add(self._pool.submit(self._upload_part, number, chunk))

    def _upload_part(self, number: int, chunk: bytes) -> None:
        try:
            answer = self.s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=chunk,
            )
            with self._lock:
                self._parts[number] = answer["ETag"]
        except BaseException as exc:
            with self._lock:
                if self._failure is None:
                    self._failure = S3TransferError(
                        f"upload to s3://{self.bucket}/{self.key} failed at part {number}: "
                        f"{failure_reason(exc)}"
                    )
            raise
        finally:
            with self._lock:
                self._in_flight_bytes -= len(chunk)

    def _drain(self, keep: int) -> None:
        """Wait until at most `keep` parts are in flight; raise the first failure."""
        while len(self._futures) > keep:
            finished, self._futures = wait(self._futures, return_when=FIRST_COMPLETED)
            for future in finished:
                if future.exception() is not None:
                    self._raise_failure()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure = self._failure
            self.abort()
            raise failure

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures = set()


class S3Download(io.RawIOBase):
    """A read-only binary file over s3://bucket/key, streamed; a broken connection resumes with a
    ranged GET from the last byte read, a few times, then fails naming the object."""

    def __init__(self, s3: Any, bucket: str, key: str, *, retries: int = 3) -> None:
        super().__init__()
        self.s3, self.bucket, self.key, self.retries = s3, bucket, key, retries
        self.position = 0
        self._etag: str | None = None
        self._body: Any = None
        self.size: int | None = None
        self._open()

    def _open(self) -> None:
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if self.position:
            request["Range"] = f"bytes={self.position}-"
        if self._etag:
            request["IfMatch"] = self._etag  # the same object, not one written since
        try:
            answer = self.s3.get_object(**request)
        except Exception as exc:
            raise S3TransferError(
                f"cannot read s3://{self.bucket}/{self.key}: {failure_reason(exc)}"
            ) from exc
        self._etag = answer.get("ETag")
        if self.size is None:
            self.size = int(answer.get("ContentLength", 0))
        self._body = answer["Body"]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        for attempt in range(self.retries + 1):
            try:
                data = self._body.read(len(view))
                break
            except Exception as exc:
                if attempt == self.retries:
                    raise S3TransferError(
                        f"reading s3://{self.bucket}/{self.key} failed at byte {self.position}: "
                        f"{failure_reason(exc)}"
                    ) from exc
                self._open()
        view[: len(data)] = data
        self.position += len(data)
        return len(data)

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
        super().close()


class Checked(io.RawIOBase):
    """A stream read through, its SHA-256 and size kept (a restore checks them against the
    manifest once the archive is read)."""

    def __init__(self, source: Any) -> None:
        super().__init__()
        self.source, self.digest, self.size = source, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        count = self.source.readinto(buffer)
        self.digest.update(memoryview(buffer)[:count])
        self.size += count
        return count

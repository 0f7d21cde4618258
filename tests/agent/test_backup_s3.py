"""Snapshots streamed to S3 (wap_agent.backup.s3) against moto's server on 127.0.0.1: the object is
what was written and appears only when complete; an interrupted, failed or abandoned upload leaves
no object and no open multipart upload; memory stays within the parts in flight; part sizes keep
any object within S3's 10,000 parts."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION, moto_server
from wap_agent.backup import s3 as s3mod
from wap_agent.backup.s3 import MAX_PARTS, MiB, S3Download, S3TransferError, S3Upload

BUCKET = "wap-snapshots"


def _client(endpoint: str, **kwargs: Any) -> Any:
    return s3mod.client(endpoint, REGION, FAKE_KEY, FAKE_SECRET, **kwargs)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        _client(url).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield url


@pytest.fixture
def s3(endpoint: str) -> Any:
    return _client(endpoint)


def data(size: int) -> bytes:
    """Bytes that differ from part to part (a part sent twice or out of order would show)."""
    block = os.urandom(64 * 1024)
    return (block * (size // len(block) + 1))[:size]


def chunks(payload: bytes, size: int = 300_001) -> Iterator[bytes]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def listed(s3: Any, key: str) -> tuple[list[str], list[str]]:
    """The keys under `key` and the multipart uploads still open for it."""
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("Contents", [])
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    return [o["Key"] for o in objects], [u["UploadId"] for u in uploads]


def read_back(s3: Any, key: str, size: int = MiB) -> bytes:
    with S3Download(s3, BUCKET, key) as source:
        out = bytearray()
        while block := source.read(size):
            out += block
        return bytes(out)


def test_object_is_what_was_written_and_appears_only_when_complete(s3: Any) -> None:
    payload = data(43 * MiB + 12345)
    key = "p/c/snapshots/one/archive.gz"
    upload = S3Upload(s3, BUCKET, key, part_size=5 * MiB, max_in_flight=3)
    for piece in chunks(payload):
        upload.write(piece)
    assert listed(s3, key)[0] == []  # parts stored, but no object yet
    assert len(listed(s3, key)[1]) == 1
    summary = upload.complete()
    assert summary["parts"] == 9  # each part numbered once, in order, none overwritten
    assert summary["size"] == len(payload)
    assert summary["sha256"] == hashlib.sha256(payload).hexdigest()
    assert listed(s3, key) == ([key], [])
    assert read_back(s3, key) == payload
    # held in memory: the parts in flight and the one being filled, never the object
    assert upload.peak_held <= (3 + 1) * 5 * MiB + 300_001


def test_a_small_object_is_one_put_and_visible_when_complete(s3: Any) -> None:
    key = "p/c/snapshots/small/manifest.json"
    with S3Upload(s3, BUCKET, key) as upload:
        upload.write(b'{"ok": true}')
        assert listed(s3, key) == ([], [])
    assert read_back(s3, key) == b'{"ok": true}'


def test_an_interrupted_upload_leaves_nothing(s3: Any) -> None:
    key = "p/c/snapshots/interrupted/archive"
    upload = S3Upload(s3, BUCKET, key, part_size=5 * MiB, max_in_flight=2)
    with pytest.raises(RuntimeError, match="the dump broke"), upload:
        for piece in chunks(data(17 * MiB)):
            upload.write(piece)
        assert listed(s3, key)[1]  # an upload with parts was open
        raise RuntimeError("the dump broke")
    assert listed(s3, key) == ([], [])


def test_closing_without_completing_aborts(s3: Any) -> None:
    key = "p/c/snapshots/abandoned/archive"
    upload = S3Upload(s3, BUCKET, key, part_size=5 * MiB)
    for piece in chunks(data(11 * MiB)):
        upload.write(piece)
    upload.close()
    assert listed(s3, key) == ([], [])
    with pytest.raises(ValueError, match="after the upload ended"):
        upload.write(b"more")


def test_s3_gone_mid_upload_fails_with_the_reason(s3: Any) -> None:
    with moto_server() as doomed:
        client = _client(doomed, max_attempts=1)
        where = {"LocationConstraint": REGION}
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=where)
        upload = S3Upload(client, BUCKET, "gone/archive", part_size=5 * MiB, max_in_flight=2)
        upload.write(data(6 * MiB))
    with pytest.raises(
        S3TransferError, match=r"s3://wap-snapshots/gone/archive.*(connect|Connect)"
    ):
        for piece in chunks(data(30 * MiB)):
            upload.write(piece)
        upload.complete()


def test_reading_a_missing_object_names_it(s3: Any) -> None:
    with pytest.raises(S3TransferError, match=r"s3://wap-snapshots/no/such/key.*NoSuchKey"):
        S3Download(s3, BUCKET, "no/such/key")


def test_a_missing_bucket_fails_with_the_reason_and_stores_nothing(s3: Any) -> None:
    upload = S3Upload(s3, "no-such-bucket", "k", part_size=5 * MiB)
    with pytest.raises(S3TransferError, match=r"s3://no-such-bucket/k.*NoSuchBucket"), upload:
        upload.write(data(6 * MiB))
    with pytest.raises(ClientError):
        s3.head_object(Bucket="no-such-bucket", Key="k")


def parts_for(expected: int | None, actual: int) -> int:
    first = s3mod.part_size_for(expected)
    cut, count = 0, 0
    while cut < actual:
        cut += s3mod.next_part_size(first, expected, cut)
        count += 1
    return count


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        (10 * 1024**4, 10 * 1024**4),  # 10 TiB as expected
        (1024**3, 5 * 1024**4),  # expected 1 GiB, got the largest object S3 takes
        (None, 5 * 1024**4),  # no estimate at all
        (100 * 1024**3, 10 * 1024**2),  # far less than expected
    ],
)
def test_part_sizes_stay_within_s3_limits(expected: int | None, actual: int) -> None:
    assert parts_for(expected, actual) <= MAX_PARTS
    first = s3mod.part_size_for(expected)
    assert 5 * MiB <= first <= 5 * 1024 * MiB


class Breaks:
    """An object body whose connection breaks once, after `after` bytes."""

    def __init__(self, body: Any, after: int) -> None:
        self.body, self.left = body, after

    def read(self, size: int) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("connection reset by peer")
        data = self.body.read(min(size, self.left))
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.body.close()


def test_a_download_whose_connection_breaks_resumes_where_it_was(s3: Any) -> None:
    payload = data(3 * MiB + 5)
    s3.put_object(Bucket=BUCKET, Key="restore/archive", Body=payload)
    source = S3Download(s3, BUCKET, "restore/archive")
    source._body = Breaks(source._body, MiB + 7)
    out = bytearray()
    while block := source.read(256 * 1024):
        out += block
    source.close()
    assert bytes(out) == payload and source.size == len(payload)


def test_a_download_that_keeps_breaking_fails_naming_the_object_and_byte(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="restore/broken", Body=data(MiB))
    source = S3Download(s3, BUCKET, "restore/broken", retries=0)
    source._body = Breaks(source._body, 1000)
    with pytest.raises(S3TransferError, match=r"s3://wap-snapshots/restore/broken .* byte 1000"):
        while source.read(4096):
            pass

"""Benchmark: streaming a snapshot to S3 (wap_agent.backup.s3.S3Upload) against moto's server.

    .venv/bin/python -m tests.bench.s3_stream [--mib 128 512] [--part-mib 8] [--in-flight 4]

For each size: the upload's MB/s, its part count, the most bytes the writer held at once
(`peak_held`: the parts in flight and the one being filled) and how much this process's peak RSS
grew during the upload, which stays flat as the size grows when memory is bounded by the parts in
flight. Then the download's MB/s through S3Download. Prints the figures; asserts nothing.
moto keeps objects in its own memory, so the figures are the client's cost on this machine plus
moto's, not S3's.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from tests.aws.cloud import FAKE_KEY, FAKE_SECRET, REGION, moto_server
from wap_agent.backup import s3 as s3mod
from wap_agent.backup.s3 import MiB, S3Download, S3Upload


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=4)
    options = parser.parse_args()
    block = os.urandom(MiB)
    with moto_server() as endpoint:
        client = s3mod.client(endpoint, REGION, FAKE_KEY, FAKE_SECRET)
        client.create_bucket(
            Bucket="bench", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        print(
            f"part {options.part_mib} MiB, {options.in_flight} parts in flight, moto at {endpoint}"
        )
        for size in options.mib:
            key = f"bench/{size}.archive"
            rss_before = peak_rss_mib()
            started = time.perf_counter()
            upload = S3Upload(client, "bench", key, part_size=options.part_mib * MiB,
                              max_in_flight=options.in_flight)  # fmt: skip
            for _ in range(size):
                upload.write(block)
            done = upload.complete()
            took = time.perf_counter() - started
            grew = peak_rss_mib() - rss_before
            started = time.perf_counter()
            with S3Download(client, "bench", key) as source:
                while source.read(MiB):
                    pass
            read = time.perf_counter() - started
            print(f"{size:6d} MiB: upload {size / took:7.1f} MiB/s, {done['parts']} parts,"
                  f" peak held {upload.peak_held / MiB:6.1f} MiB, peak RSS +{grew:6.1f} MiB;"
                  f" download {size / read:7.1f} MiB/s")  # fmt: skip
            client.delete_object(Bucket="bench", Key=key)


if __name__ == "__main__":
    main()

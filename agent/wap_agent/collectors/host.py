"""Host metrics through psutil: CPU, load, memory and swap, filesystems, disks, network.

Names follow node_exporter's where one exists (``host_`` for ``node_``): counters end in
``_total``, sizes are ``_bytes``, times ``_seconds``.
"""

from __future__ import annotations

import os
import re
import time
from typing import Callable

import psutil

from wap_agent.sample import COUNTER, GAUGE, Sample

# Whole disks only: partitions are counted in their disk already; loop, RAM and floppy devices
# are not storage a MongoDB host writes its data to.
IGNORED_DISKS = re.compile(
    r"^(loop\d+|z?ram\d+|fd\d+|sr\d+|(sd|hd|vd|xvd)[a-z]+\d+|nvme\d+n\d+p\d+|mmcblk\d+p\d+)$"
)
# guest time is already counted in user/nice on Linux.
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


class HostCollector:
    name = "host"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.errors: list[str] = []

    def collect(self) -> list[Sample]:
        self.errors = []
        samples: list[Sample] = []
        for part in (self._cpu, self._memory, self._filesystems, self._disks, self._network):
            try:
                samples.extend(part())
            except Exception as exc:  # one unreadable part (a /proc file) spoils no other
                self.errors.append(f"{part.__name__.lstrip('_')}: {type(exc).__name__}: {exc}")
        return samples

    def _cpu(self) -> list[Sample]:
        now = self.clock()
        times = psutil.cpu_times()
        out = [
            Sample(
                "host_cpu_seconds_total", float(getattr(times, mode)), COUNTER, {"mode": mode}, now
            )
            for mode in CPU_MODES
            if hasattr(times, mode)
        ]
        out.append(Sample("host_cpu_count", float(psutil.cpu_count() or 1), GAUGE, {}, now))
        load1, load5, load15 = os.getloadavg()
        out += [
            Sample("host_load1", load1, GAUGE, {}, now),
            Sample("host_load5", load5, GAUGE, {}, now),
            Sample("host_load15", load15, GAUGE, {}, now),
            Sample("host_boot_time_seconds", float(psutil.boot_time()), GAUGE, {}, now),
        ]
        return out

    def _memory(self) -> list[Sample]:
        now = self.clock()
        mem = psutil.virtual_memory()
        swap = psutil.swap_memory()
        out = [
            Sample(f"host_memory_{field}_bytes", float(getattr(mem, field)), GAUGE, {}, now)
            for field in ("total", "available", "used", "free", "buffers", "cached")
            if hasattr(mem, field)
        ]
        out += [
            Sample("host_swap_total_bytes", float(swap.total), GAUGE, {}, now),
            Sample("host_swap_used_bytes", float(swap.used), GAUGE, {}, now),
            Sample("host_swap_free_bytes", float(swap.free), GAUGE, {}, now),
            Sample("host_swap_in_bytes_total", float(swap.sin), COUNTER, {}, now),
            Sample("host_swap_out_bytes_total", float(swap.sout), COUNTER, {}, now),
        ]
        return out

    def _filesystems(self) -> list[Sample]:
        now = self.clock()
        out: list[Sample] = []
        seen = set()
        # all=False: filesystems on devices only (no proc, tmpfs, overlay, cgroup...).
        for part in sorted(psutil.disk_partitions(all=False), key=lambda p: len(p.mountpoint)):
            if part.device in seen:  # a bind mount of a filesystem already reported
                continue
            seen.add(part.device)
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError as exc:
                self.errors.append(f"filesystem {part.mountpoint}: {exc}")
                continue
            labels = {"mountpoint": part.mountpoint, "device": part.device, "fstype": part.fstype}
            out += [
                Sample("host_filesystem_size_bytes", float(usage.total), GAUGE, labels, now),
                Sample("host_filesystem_used_bytes", float(usage.used), GAUGE, labels, now),
                Sample("host_filesystem_avail_bytes", float(usage.free), GAUGE, labels, now),
            ]
        return out

    def _disks(self) -> list[Sample]:
        devices = psutil.disk_io_counters(perdisk=True) or {}
        wanted = {d: io for d, io in devices.items() if not IGNORED_DISKS.match(d)}
        return _per_device(wanted, DISK_COUNTERS, self.clock())

    def _network(self) -> list[Sample]:
        interfaces = psutil.net_io_counters(pernic=True) or {}
        return _per_device(interfaces, NETWORK_COUNTERS, self.clock())


# (series, psutil field, scale): psutil's disk times are milliseconds; busy_time (Linux, FreeBSD)
# is the time the disk had I/O in flight.
DISK_COUNTERS = (
    ("host_disk_reads_completed_total", "read_count", 1.0),
    ("host_disk_writes_completed_total", "write_count", 1.0),
    ("host_disk_read_bytes_total", "read_bytes", 1.0),
    ("host_disk_written_bytes_total", "write_bytes", 1.0),
    ("host_disk_read_time_seconds_total", "read_time", 1e-3),
    ("host_disk_write_time_seconds_total", "write_time", 1e-3),
    ("host_disk_io_time_seconds_total", "busy_time", 1e-3),
)
NETWORK_COUNTERS = (
    ("host_network_receive_bytes_total", "bytes_recv", 1.0),
    ("host_network_transmit_bytes_total", "bytes_sent", 1.0),
    ("host_network_receive_packets_total", "packets_recv", 1.0),
    ("host_network_transmit_packets_total", "packets_sent", 1.0),
    ("host_network_receive_errs_total", "errin", 1.0),
    ("host_network_transmit_errs_total", "errout", 1.0),
    ("host_network_receive_drop_total", "dropin", 1.0),
    ("host_network_transmit_drop_total", "dropout", 1.0),
)


def _per_device(devices: dict, table: tuple, now: float) -> list[Sample]:
    out: list[Sample] = []
    for device, io in sorted(devices.items()):
        labels = {"device": device}
        for name, field, scale in table:
            if hasattr(io, field):
                value = float(getattr(io, field)) * scale
                out.append(Sample(name, value, COUNTER, labels, now))
    return out

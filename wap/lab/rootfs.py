"""The lab hosts' shared root filesystem: a minimal Debian tree built once with debootstrap.

Every lab host mounts it read-only as the lower layer of its own overlay, so hosts start from the
same bare Debian whatever is installed on the machine. The tree's folder name carries a digest of
what goes into it, so a change to the package list or to the customisation builds a new one.
"""

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

SUITE = "bookworm"
# What a bare host of a real fleet has, plus what Ansible and the roles need on it.
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "iproute2",
    "procps",
    "sudo",
    "ca-certificates",
    "iputils-ping",
    "less",
    # What Ansible's MongoDB modules import on the managed host (installed there by the roles on
    # real hosts; baked in here because lab hosts cannot reach a package mirror).
    "python3-pymongo",
]
# Units a container host must not run: consoles it has no terminal for, and periodic jobs.
MASKED_UNITS = [
    "getty@.service",
    "console-getty.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-pstore.service",
]
SSHD_CONFIG = """\
# Written by wap lab: key-only root login, no DNS lookups on connect.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""
JOURNALD_CONFIG = "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n"
# Bumped when the customisation below changes, so that a new tree is built.
CUSTOMISATION_VERSION = "1"

Progress = Callable[[str], None]


def default_mirror() -> str:
    """The Debian mirror this machine's apt uses, so debootstrap reaches what apt reaches."""
    if env := os.environ.get("WAP_LAB_MIRROR"):
        return env
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"(?:URIs:|deb)\s+(https?://\S+/debian)\s", text):
            return match.group(1)
    return "http://deb.debian.org/debian"


def tree_name() -> str:
    digest = hashlib.sha256(
        " ".join([SUITE, CUSTOMISATION_VERSION, *PACKAGES, *MASKED_UNITS]).encode()
    ).hexdigest()[:12]
    return f"rootfs-{SUITE}-{digest}"


def rootfs_path(cache: Path) -> Path:
    return cache / tree_name()


def is_ready(cache: Path) -> bool:
    return (rootfs_path(cache) / ".wap-lab-ready").exists()


def prepare(cache: Path, progress: Progress = print) -> Path:
    """Build the root filesystem if it is not there yet; return its path."""
    target = rootfs_path(cache)
    if is_ready(cache):
        return target
    if shutil.which("debootstrap") is None:
        raise RuntimeError(
            "debootstrap is not installed: run scripts/install (or apt-get install debootstrap)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    building = cache / f".{target.name}.building"
    shutil.rmtree(building, ignore_errors=True)
    mirror = default_mirror()
    progress(f"building the lab hosts' root filesystem ({SUITE} from {mirror}); takes about 1 min")
    log = cache / "debootstrap.log"
    with log.open("w") as out:
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(building),
                mirror,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise RuntimeError(
            f"debootstrap failed (exit {result.returncode}); see {log}:\n" + "\n".join(tail)
        )
    _customise(building)
    (building / ".wap-lab-ready").write_text(tree_name() + "\n")
    building.rename(target)
    if not in_use():
        for old in cache.glob(f"rootfs-{SUITE}-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    progress(f"root filesystem ready: {target}")
    return target


def in_use() -> bool:
    """Whether any lab host runs (on whichever tree): older trees are kept until none does."""
    roots = (Path("/sys/fs/cgroup/wap-lab"), Path("/sys/fs/cgroup/unified/wap-lab"))
    return any(any(root.glob("*/*/cgroup.procs")) for root in roots)


def _customise(tree: Path) -> None:
    etc = tree / "etc"
    # Host keys and machine id are made per host at boot; a tree-wide one would be shared.
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    (etc / "machine-id").write_text("")
    (etc / "resolv.conf").unlink(missing_ok=True)
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    (etc / "ssh/sshd_config.d/wap-lab.conf").write_text(SSHD_CONFIG)
    (etc / "systemd/journald.conf.d").mkdir(exist_ok=True)
    (etc / "systemd/journald.conf.d/wap-lab.conf").write_text(JOURNALD_CONFIG)
    for unit in MASKED_UNITS:
        link = etc / "systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for wants in (etc / "systemd/system").glob("*.wants"):
        for link in wants.iterdir():
            if link.name in MASKED_UNITS or link.name.startswith("getty@"):
                link.unlink()
    (tree / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
    # apt cannot reach anything from a lab host; keep the package lists out of the tree.
    shutil.rmtree(tree / "var/cache/apt/archives", ignore_errors=True)
    (tree / "var/cache/apt/archives/partial").mkdir(parents=True)

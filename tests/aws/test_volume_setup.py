"""whaleal.wap.aws_volume_setup: XFS on the data volume, mounted at the data path, in fstab."""

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aws.cloud import recap
from tests.labhosts import REPO, VENV_BIN, ansible_env

PLAYBOOK = Path(__file__).parent / "playbooks" / "volume_setup.yml"


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    """A 320 MiB block device backed by a sparse file (XFS needs at least 300 MiB)."""
    if not shutil.which("mkfs.xfs"):
        pytest.fail("mkfs.xfs is missing: scripts/install installs xfsprogs")
    image = tmp_path / "volume.img"
    with image.open("wb") as f:
        f.truncate(320 * 1024 * 1024)
    device = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield device
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", "--all-targets", device], capture_output=True, check=True)
        subprocess.run(["losetup", "--detach", device], check=False)


def run(device: str, mount: Path, fstab: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), str(PLAYBOOK),
         "-e", f"wap_test_device={device}", "-e", f"wap_test_mount_path={mount}",
         "-e", f"wap_test_fstab={fstab}"],
        capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=300,
    )  # fmt: skip


def test_formats_mounts_records_in_fstab_and_changes_nothing_the_second_time(
    tmp_path: Path, loop_device: str
) -> None:
    mount, fstab = tmp_path / "mongodb", tmp_path / "fstab"
    first = run(loop_device, mount, fstab)
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first.stdout)["localhost"]["changed"] >= 3  # mkfs, fstab, mount (and the dir)

    source, fstype = subprocess.run(
        ["findmnt", "--noheadings", "--output", "SOURCE,FSTYPE", "--mountpoint", str(mount)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert (source, fstype) == (loop_device, "xfs")
    uuid = subprocess.run(
        ["blkid", "-o", "value", "-s", "UUID", loop_device], capture_output=True, text=True
    ).stdout.strip()
    assert fstab.read_text() == f"UUID={uuid} {mount} xfs defaults,noatime,nofail 0 2\n"

    (mount / "marker").write_text("data")
    second = run(loop_device, mount, fstab)
    assert second.returncode == 0, second.stdout + second.stderr
    assert recap(second.stdout)["localhost"]["changed"] == 0
    assert (mount / "marker").read_text() == "data"  # not formatted again


def test_never_formats_a_device_holding_another_filesystem(tmp_path: Path, loop_device: str):
    subprocess.run(["mkfs.ext4", "-q", loop_device], check=True)
    done = run(loop_device, tmp_path / "mongodb", tmp_path / "fstab")
    assert done.returncode != 0
    assert "already holds a ext4 filesystem" in done.stdout
    assert not (tmp_path / "fstab").exists()

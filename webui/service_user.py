"""The unprivileged user that job workers run as when the platform is started by root.

A job's ansible-playbook runs in its worker's process tree, so a worker running as root would make
every job (and any mistake in one) root on the platform machine. `wap up` started as root runs its
workers as WAP_WORKER_USER (default `wap`, created as a system user when missing), with a home of
their own in the data dir (Ansible's local files, the deploy roles' generated keyFile and CA) and a
job dir they own; the data dir's keys stay root's (workers get what they need in their
environment). `wap worker` started as root with WAP_WORKER_USER set switches to that user itself
(a service manager may also start it as that user directly).
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_USER = "wap"


class ServiceUserError(RuntimeError):
    """The service user cannot be made or used; the message says why and what to do."""


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    home: Path

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "HOME": str(self.home), "USER": self.name, "LOGNAME": self.name}


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def ensure(name: str | None, data_dir: Path) -> ServiceUser:
    """The service user (created as a system user when missing) with its home under the data dir,
    owned by it and private. Root only."""
    name = name or DEFAULT_USER
    entry = _lookup(name)
    if entry is None:
        done = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", str(data_dir / "worker"), "--shell", "/usr/sbin/nologin", name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        entry = _lookup(name)
        if entry is None:
            why = done.stderr.strip() or f"useradd exited with {done.returncode}"
            raise ServiceUserError(
                f"cannot create the worker user {name!r} ({why}):"
                f" create it (useradd --system {name}) or set WAP_WORKER_USER to an existing one"
            )
        print(f"wap up: created the system user {name!r} that job workers run as", flush=True)
    if entry.pw_uid == 0:
        raise ServiceUserError(
            f"WAP_WORKER_USER={name!r} is root: workers must run as an unprivileged user"
        )
    home = data_dir / "worker"
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    return ServiceUser(name, entry.pw_uid, entry.pw_gid, home)


def own_dir(user: ServiceUser, path: Path) -> None:
    """A private dir of the service user's (its job dirs)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(path, user.uid, user.gid)
    os.chmod(path, 0o700)


def check_usable(user: ServiceUser, env: dict[str, str]) -> None:
    """Fail with advice when the service user cannot run the platform's Python and reach its home
    (an installation inside a private directory such as /root)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os, webui.jobs.worker; os.listdir(os.environ['HOME'])"],
        env=user.environment(env), user=user.uid, group=user.gid, extra_groups=[],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ServiceUserError(
            f"the worker user {user.name!r} cannot run {sys.executable} or reach {user.home}"
            f" ({tail}): install WAP where that user can read it (e.g. /opt/wap, not under"
            " /root) and keep the directories above WAP_DATA_DIR searchable"
        )


def switch_to(name: str) -> ServiceUser:
    """Become the service user for good (no supplementary groups); for `wap worker` as root."""
    entry = _lookup(name)
    if entry is None or entry.pw_uid == 0:
        raise ServiceUserError(
            f"WAP_WORKER_USER={name!r} is not an unprivileged user of this machine"
        )
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    user = ServiceUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))
    os.environ.update(user.environment({}))
    return user

"""Lab hosts on one machine: each a network namespace with its own address on a bridge, its own
hostname, a copy-on-write root over the shared Debian tree, and systemd as PID 1 running sshd.

Everything a lab creates is named after it, so that `down` finds it again from the system itself,
not only from the lab's state file, and cleans up after a crash or a half-finished `up`:

    bridge             wb-<lab>                 veth (machine side)   wv-<lab>-<index>
    network namespace  wap-<lab>-<host>         cgroup (v2)           wap-lab/<lab>/<host>
    files              <WAP_LAB_DIR>/<lab>/     (state, SSH key, each host's upper layer)
"""

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from wap.lab import rootfs

BOOT_SCRIPT = Path(__file__).with_name("boot.sh")
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
HOST_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
FIRST_HOST_OFFSET = 10  # lab1 gets the subnet's address .11, lab2 .12, ...
BOOT_TIMEOUT = 60.0
# Host processes started by this process: polled on down so that none stays a zombie.
_children: list[subprocess.Popen] = []


class LabError(Exception):
    """Something the user can fix or retry; the message says what and how."""


@dataclass
class Host:
    name: str
    index: int
    address: str  # with prefix length, e.g. 10.213.0.11/24
    gateway: str

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass
class LabState:
    name: str
    subnet: str
    hosts: dict[str, Host] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "LabState | None":
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        hosts = {name: Host(**host) for name, host in data.pop("hosts").items()}
        return cls(hosts=hosts, **data)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


def run(*cmd: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)
    if check and result.returncode != 0:
        detail = result.stderr.strip() or result.stdout.strip()
        raise LabError(f"`{' '.join(cmd)}` failed: {detail}")
    return result


def cgroup2_root() -> Path:
    """The cgroup v2 hierarchy: /sys/fs/cgroup on unified machines, .../unified on hybrid ones."""
    for candidate in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (candidate / "cgroup.procs").exists() and (candidate / "cgroup.stat").exists():
            return candidate
    raise LabError("no cgroup v2 hierarchy is mounted (looked at /sys/fs/cgroup and .../unified)")


class Lab:
    def __init__(
        self,
        name: str = "default",
        state_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if not NAME_RE.match(name):
            raise LabError(
                f"lab name {name!r} is not valid: use 1 to 8 lowercase letters and digits, "
                "starting with a letter (it becomes part of interface names)"
            )
        self.name = name
        base = state_dir or Path(os.environ.get("WAP_LAB_DIR", "/var/lib/wap-lab"))
        self.base = base
        self.dir = base / name
        self.cache = cache_dir or Path(os.environ.get("WAP_LAB_CACHE", "/var/cache/wap-lab"))
        self.bridge = f"wb-{name}"
        self.state_file = self.dir / "lab.json"
        self.key_file = self.dir / "id_ed25519"

    # -- names -------------------------------------------------------------------------------
    def netns(self, host: str) -> str:
        return f"wap-{self.name}-{host}"

    def veth(self, index: int) -> str:
        return f"wv-{self.name}-{index}"

    def cgroup(self, host: str | None = None) -> Path:
        path = cgroup2_root() / "wap-lab" / self.name
        return path / host if host else path

    def host_dir(self, host: str) -> Path:
        return self.dir / "hosts" / host

    # -- locking -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One lab operation at a time on this machine (subnet checks and creation included)."""
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def state(self) -> LabState | None:
        return LabState.load(self.state_file)

    # -- up ----------------------------------------------------------------------------------
    def up(self, hosts: int, subnet: str, progress=print) -> LabState:
        require_root()
        if not 1 <= hosts <= 50:
            raise LabError(f"--hosts {hosts}: a lab has between 1 and 50 hosts")
        net = parse_subnet(subnet)
        if net.num_addresses - 2 < FIRST_HOST_OFFSET + hosts:
            raise LabError(f"subnet {net} is too small for {hosts} hosts (they start at .11)")
        tree = rootfs.prepare(self.cache, progress)
        with self.locked():
            current = self.state()
            if current is not None:
                wanted = [f"lab{i}" for i in range(1, hosts + 1)]
                same = current.subnet == str(net) and sorted(current.hosts) == sorted(wanted)
                if same and all(self.host_running(h) for h in current.hosts):
                    progress(f"lab {self.name} is already up with {hosts} hosts")
                    return current
                raise LabError(
                    f"lab {self.name} already exists ({len(current.hosts)} hosts on "
                    f"{current.subnet}); run `wap lab down` first"
                )
            if self._leftovers():
                raise LabError(
                    f"lab {self.name} has leftovers from an earlier run (namespaces, cgroups or "
                    "files) but no state; run `wap lab down` first"
                )
            check_subnet_free(net, self.bridge)
            raise_inotify_limit()
            started = time.monotonic()
            state = LabState(name=self.name, subnet=str(net))
            self.dir.mkdir(parents=True, exist_ok=True)
            state.save(self.state_file)
            self._make_key()
            gateway = str(net.network_address + 1)
            self._bridge_up(f"{gateway}/{net.prefixlen}")
            for i in range(1, hosts + 1):
                addr = net.network_address + FIRST_HOST_OFFSET + i
                host = Host(f"lab{i}", i, f"{addr}/{net.prefixlen}", gateway)
                state.hosts[host.name] = host
                state.save(self.state_file)
                self._start_host(host, tree, state)
            for host in state.hosts.values():
                self._wait_ready(host)
            progress(
                f"lab {self.name}: {hosts} hosts up on {net} in {time.monotonic() - started:.1f} s"
            )
            return state

    def add(self, name: str, address: str, progress=print) -> Host:
        """Add one host with a given address (its subnet gets a gateway on the lab's bridge)."""
        require_root()
        if not HOST_RE.match(name):
            raise LabError(f"host name {name!r} is not valid: lowercase letters, digits and '-'")
        iface = ipaddress.ip_interface(address if "/" in address else f"{address}/24")
        tree = rootfs.prepare(self.cache, progress)
        with self.locked():
            state = self.state()
            if state is None:
                raise LabError(f"lab {self.name} is not up; run `wap lab up` first")
            if name in state.hosts:
                raise LabError(f"lab {self.name} already has a host named {name}")
            if any(h.ip == str(iface.ip) for h in state.hosts.values()):
                raise LabError(f"address {iface.ip} is already used by a host of lab {self.name}")
            gateway = iface.network.network_address + 1
            if iface.ip == gateway:
                raise LabError(f"{iface.ip} is the gateway of {iface.network}: pick another")
            if str(iface.network) != state.subnet and not self._bridge_has(iface.network):
                check_subnet_free(iface.network, self.bridge)
                run("ip", "addr", "add", f"{gateway}/{iface.network.prefixlen}", "dev", self.bridge)
            index = max([h.index for h in state.hosts.values()], default=0) + 1
            host = Host(name, index, str(iface), str(gateway))
            state.hosts[name] = host
            state.save(self.state_file)
            self._start_host(host, tree, state)
            self._wait_ready(host)
            progress(f"lab {self.name}: host {name} up at {iface.ip}")
            return host

    def remove(self, name: str) -> None:
        require_root()
        with self.locked():
            state = self.state()
            if state is None or name not in state.hosts:
                raise LabError(f"lab {self.name} has no host named {name}")
            host = state.hosts.pop(name)
            self._kill_cgroup(self.cgroup(name))
            run("ip", "netns", "delete", self.netns(name), check=False)
            run("ip", "link", "delete", self.veth(host.index), check=False)
            shutil.rmtree(self.host_dir(name), ignore_errors=True)
            state.save(self.state_file)

    # -- down --------------------------------------------------------------------------------
    def down(self, progress=print) -> None:
        """Remove every process, namespace, mount, interface and file of this lab. Idempotent."""
        require_root()
        started = time.monotonic()
        with self.locked():
            self._kill_cgroup(self.cgroup())
            for ns in list_netns():
                if ns.startswith(f"wap-{self.name}-"):
                    run("ip", "netns", "delete", ns, check=False)
            for link in list_links():
                if link == self.bridge or link.startswith(f"wv-{self.name}-"):
                    run("ip", "link", "delete", link, check=False)
            for mount in reversed(mounts_under(self.dir)):
                run("umount", "-l", mount, check=False)
            shutil.rmtree(self.dir, ignore_errors=True)
        progress(f"lab {self.name} is down ({time.monotonic() - started:.1f} s)")

    def _leftovers(self) -> bool:
        return (
            self.cgroup().exists()
            or any(ns.startswith(f"wap-{self.name}-") for ns in list_netns())
            or self.bridge in list_links()
            or self.dir.exists()
        )

    def _kill_cgroup(self, group: Path) -> None:
        if not group.exists():
            return
        (group / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + 10
        while cgroup_pids(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        if cgroup_pids(group):
            raise LabError(f"processes in {group} survived cgroup.kill; retry `wap lab down`")
        # Killed processes stay zombies until their parent reaps them: ours are reaped here,
        # the others (reparented to the machine's init) within moments.
        relative = "/" + str(group.relative_to(cgroup2_root()))
        while time.monotonic() < deadline:
            for child in list(_children):
                if child.poll() is not None:
                    _children.remove(child)
            if not processes_in_cgroup(relative):
                break
            time.sleep(0.05)
        # systemd made sub-groups inside: remove the deepest first.
        for path in sorted(group.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                path.rmdir()
        group.rmdir()
        with contextlib.suppress(OSError):
            group.parent.rmdir()  # wap-lab/ itself, once no lab is left

    # -- one host ----------------------------------------------------------------------------
    def _make_key(self) -> None:
        if not self.key_file.exists():
            run(
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"wap-lab-{self.name}",
                "-f",
                str(self.key_file),
            )

    def _bridge_up(self, gateway_iface: str) -> None:
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", gateway_iface, "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def _bridge_has(self, net: ipaddress.IPv4Network) -> bool:
        out = run("ip", "-j", "addr", "show", "dev", self.bridge).stdout
        for info in json.loads(out)[0].get("addr_info", []):
            if info.get("family") != "inet":
                continue
            if ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network == net:
                return True
        return False

    def _start_host(self, host: Host, tree: Path, state: LabState) -> None:
        hdir = self.host_dir(host.name)
        for sub in ("upper", "work", "root"):
            (hdir / sub).mkdir(parents=True, exist_ok=True)
        self._seed_upper(hdir / "upper", host, state)
        (hdir / "boot_id").write_text(str(uuid.uuid4()) + "\n")
        (hdir / "console.log").touch()

        ns, veth = self.netns(host.name), self.veth(host.index)
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "link", "set", veth, "master", self.bridge, "up")
        run("ip", "-n", ns, "addr", "add", host.address, "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "route", "add", "default", "via", host.gateway)

        group = self.cgroup(host.name)
        group.mkdir(parents=True, exist_ok=True)
        procs = group / "cgroup.procs"

        def enter_cgroup() -> None:  # runs in the child before exec
            procs.write_text(str(os.getpid()))

        with (hdir / "console.log").open("ab") as console:
            child = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "unshare",
                    "--mount",
                    "--uts",
                    "--ipc",
                    "--pid",
                    "--cgroup",
                    "--fork",
                    "/bin/sh",
                    str(BOOT_SCRIPT),
                    str(tree),
                    str(hdir),
                    host.name,
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                start_new_session=True,
                preexec_fn=enter_cgroup,
                close_fds=True,
            )
        _children.append(child)

    def _seed_upper(self, upper: Path, host: Host, state: LabState) -> None:
        """The files that make this host itself: name, identity, keys, who may log in."""
        etc = upper / "etc"
        (etc / "ssh").mkdir(parents=True, exist_ok=True)
        (etc / "hostname").write_text(host.name + "\n")
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
        lines = ["127.0.0.1 localhost", f"127.0.1.1 {host.name}"]
        lines += [f"{h.ip} {h.name}" for h in state.hosts.values() if h.name != host.name]
        lines += ["::1 localhost ip6-localhost ip6-loopback"]
        (etc / "hosts").write_text("\n".join(lines) + "\n")
        for kind in ("ed25519", "ecdsa"):
            key = etc / "ssh" / f"ssh_host_{kind}_key"
            if not key.exists():
                run(
                    "ssh-keygen",
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-C",
                    f"root@{host.name}",
                    "-f",
                    str(key),
                )
        ssh_dir = upper / "root" / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pub = Path(str(self.key_file) + ".pub").read_text()
        (ssh_dir / "authorized_keys").write_text(pub)
        (ssh_dir / "authorized_keys").chmod(0o600)

    def _wait_ready(self, host: Host) -> None:
        """Until sshd answers on the host's address and systemd has finished booting."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            if ssh_banner(host.ip):
                state = self.systemd_state(host.name)
                if state in ("running", "degraded"):
                    return
            if time.monotonic() > deadline:
                log = self.host_dir(host.name) / "console.log"
                raise LabError(
                    f"host {host.name} did not boot within {BOOT_TIMEOUT:.0f} s "
                    f"(systemd: {self.systemd_state(host.name)}); see {log}, then `wap lab down`"
                )
            time.sleep(0.1)

    # -- status ------------------------------------------------------------------------------
    def init_pid(self, host: str) -> int | None:
        """The machine-side pid of the host's PID 1 (systemd), if it runs."""
        group = self.cgroup(host)
        if not group.exists():
            return None
        for pid in cgroup_pids(group):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^NSpid:\s+(.*)$", status, re.M)
            if match and match.group(1).split()[-1] == "1":
                return pid
        return None

    def systemd_state(self, host: str) -> str:
        pid = self.init_pid(host)
        if pid is None:
            return "stopped"
        result = run(
            "nsenter",
            "-t",
            str(pid),
            "-m",
            "-u",
            "-i",
            "-n",
            "-p",
            "systemctl",
            "is-system-running",
            check=False,
        )
        return result.stdout.strip() or "starting"

    def host_running(self, host: str) -> bool:
        return self.systemd_state(host) in ("running", "degraded")

    def status(self) -> list[dict]:
        state = self.state()
        if state is None:
            return []
        rows = []
        for host in state.hosts.values():
            group = self.cgroup(host.name)
            pids = cgroup_pids(group) if group.exists() else []
            rows.append(
                {
                    "name": host.name,
                    "address": host.ip,
                    "state": self.systemd_state(host.name),
                    "ssh": "up" if ssh_banner(host.ip) else "down",
                    "processes": len(pids),
                    "memory_mib": round(pss_bytes(pids) / 2**20, 1),
                }
            )
        return rows

    def inventory(self) -> str:
        state = self.state()
        if state is None:
            raise LabError(f"lab {self.name} is not up; run `wap lab up --hosts N` first")
        hosts = {h.name: {"ansible_host": h.ip} for h in state.hosts.values()}
        data = {
            "all": {
                "children": {
                    "lab": {
                        "hosts": hosts,
                        "vars": {
                            "ansible_user": "root",
                            "ansible_ssh_private_key_file": str(self.key_file),
                            "ansible_python_interpreter": "/usr/bin/python3",
                            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
                        },
                    }
                }
            }
        }
        return yaml.safe_dump(data, sort_keys=False)


# -- machine helpers ---------------------------------------------------------------------------
def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root: it creates network namespaces, mounts and cgroups; "
            "run it as root (e.g. sudo wap lab ...)"
        )


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise LabError(f"subnet {text!r} is not an IPv4 network like 10.213.0.0/24: {exc}") from exc
    if not net.is_private:
        raise LabError(f"subnet {net} is not a private range; lab hosts only use private addresses")
    return net


def check_subnet_free(net: ipaddress.IPv4Network, own_bridge: str) -> None:
    """Refuse a subnet that overlaps any route of the machine (the default route aside)."""
    routes = json.loads(run("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == own_bridge:
            continue
        try:
            other = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if net.overlaps(other):
            raise LabError(
                f"subnet {net} overlaps the machine's route to {other} (dev {route.get('dev')}); "
                "choose another with --subnet or WAP_LAB_SUBNET"
            )


def raise_inotify_limit(minimum: int = 1024) -> None:
    """Each systemd host takes ~7 inotify instances of root's limit (128 by default)."""
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text()) < minimum:
            path.write_text(str(minimum))


def list_netns() -> list[str]:
    out = run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_links() -> list[str]:
    out = run("ip", "-j", "link", "show", check=False).stdout or "[]"
    return [link["ifname"] for link in json.loads(out)]


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4]
        if mount_point == prefix or mount_point.startswith(prefix + "/"):
            found.append(mount_point)
    return found


def cgroup_pids(group: Path) -> list[int]:
    """Pids in the cgroup and below it; systemd inside may remove sub-groups while we walk."""
    pids: list[int] = []
    for parent, _dirs, files in os.walk(group):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids += [int(p) for p in Path(parent, "cgroup.procs").read_text().split()]
    return pids


def processes_in_cgroup(relative: str) -> list[int]:
    """Pids (zombies included) whose cgroup v2 path is `relative` or below it."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            for line in (proc / "cgroup").read_text().splitlines():
                if line.startswith("0::") and (line[3:] + "/").startswith(relative + "/"):
                    found.append(int(proc.name))
    return found


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size of the processes: shared pages counted once across them."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
    return total


def ssh_banner(ip: str, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ip, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False

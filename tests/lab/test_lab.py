"""The lab: hosts reachable by Ansible over SSH, isolated from each other, removed without trace."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.labhosts import REPO, VENV_BIN, LabHosts, ansible_env, free_subnet
from tests.waiting import wait_until
from wap.cli import main as wap_main
from wap.lab import Lab, LabError
from wap.lab.lab import cgroup2_root, list_links, list_netns

PLAYBOOK = Path(__file__).parent / "playbooks" / "lab_check.yml"


def recap(output: str) -> dict[str, dict[str, int]]:
    """Per-host counters of ansible-playbook's PLAY RECAP."""
    hosts = {}
    for match in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, re.M):
        hosts[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return hosts


def playbook(lab: LabHosts, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(lab.inventory), str(path)],
        capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=300,
    )  # fmt: skip


def leftovers(lab: Lab) -> list[str]:
    """Everything of this lab still on the machine: namespaces, links, cgroups, mounts, files."""
    found = [f"netns {ns}" for ns in list_netns() if ns.startswith(f"wap-{lab.name}-")]
    found += [
        f"link {link}"
        for link in list_links()
        if link == lab.bridge or link.startswith(f"wv-{lab.name}-")
    ]
    group = cgroup2_root() / "wap-lab" / lab.name
    if group.exists():
        found.append(f"cgroup {group}")
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line.split()[4]}" for line in mounts.splitlines() if str(lab.dir) in line]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"/wap-lab/{lab.name}/" in (proc / "cgroup").read_text():
                found.append(f"process {proc.name}")
        except OSError:
            continue
    if lab.dir.exists():
        found.append(f"files {lab.dir}")
    return found


def test_ansible_reaches_every_host_and_playbook_is_idempotent(lab3: LabHosts) -> None:
    ping = subprocess.run(
        [str(VENV_BIN / "ansible"), "-i", str(lab3.inventory), "all", "-m", "ping", "-o"],
        capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert sorted(re.findall(r"^(lab\d) \| SUCCESS", ping.stdout, re.M)) == ["lab1", "lab2", "lab3"]

    first = playbook(lab3, PLAYBOOK)
    assert first.returncode == 0, first.stdout + first.stderr
    counts = recap(first.stdout)
    assert sorted(counts) == ["lab1", "lab2", "lab3"]
    assert counts["lab1"]["changed"] == 3 and counts["lab2"]["changed"] == 2

    second = playbook(lab3, PLAYBOOK)
    assert second.returncode == 0, second.stdout + second.stderr
    assert {h: c["changed"] for h, c in recap(second.stdout).items()} == {
        "lab1": 0, "lab2": 0, "lab3": 0,
    }  # fmt: skip

    # The file exists only where the task wrote it: each host has its own root filesystem.
    assert lab3.ssh("lab1", "cat /root/only-on-lab1").stdout.startswith("written by a task on lab1")
    for host in ("lab2", "lab3"):
        assert lab3.ssh(host, "test -e /root/only-on-lab1", check=False).returncode == 1
    assert not Path("/root/only-on-lab1").exists()
    # The service runs under each host's own systemd and answers on that host's address.
    for host, ip in lab3.hosts.items():
        assert lab3.ssh(host, "systemctl is-active wap-echo.service").stdout.strip() == "active"
        assert lab3.ssh(host, "systemctl is-enabled wap-echo.service").stdout.strip() == "enabled"
        page = subprocess.run(
            ["python3", "-c", f"import urllib.request as u; print(u.urlopen('http://{ip}:8099/').status)"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert page.stdout.strip() == "200"


def test_hosts_are_separate_machines(lab3: LabHosts) -> None:
    seen = {}
    for host in lab3.hosts:
        out = lab3.ssh(
            host,
            "hostname; cat /etc/machine-id; cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2;"
            " ip -4 -o addr show eth0 | awk '{print $4}'; ps -p 1 -o comm=;"
            " systemctl is-system-running",
        ).stdout.split()
        seen[host] = out
        assert out[0] == host
        assert out[3].split("/")[0] == lab3.hosts[host]
        assert out[4] == "systemd"
        assert out[5] == "running"
    for column in (1, 2, 3):  # machine id, host key, address differ between hosts
        assert len({values[column] for values in seen.values()}) == 3
    # Hosts reach each other over the lab network.
    assert lab3.ssh("lab1", f"ping -c1 -W2 {lab3.hosts['lab3']}", check=False).returncode == 0


def test_status_and_inventory_describe_the_running_lab(lab3: LabHosts, capsys) -> None:
    assert wap_main(["lab", "--lab", lab3.lab.name, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(h["name"], h["state"], h["ssh"]) for h in status["hosts"]] == [
        ("lab1", "running", "up"), ("lab2", "running", "up"), ("lab3", "running", "up"),
    ]  # fmt: skip
    assert all(h["memory_mib"] > 0 for h in status["hosts"])
    listed = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", str(lab3.inventory), "--list"],
        capture_output=True, text=True, env=ansible_env(), check=True,
    )  # fmt: skip
    inventory = json.loads(listed.stdout)
    assert sorted(inventory["lab"]["hosts"]) == ["lab1", "lab2", "lab3"]
    assert inventory["_meta"]["hostvars"]["lab2"]["ansible_host"] == lab3.hosts["lab2"]


def test_down_leaves_nothing_and_is_safe_twice(make_lab) -> None:
    lab = make_lab(2).lab
    assert leftovers(lab), "the lab should exist before down"
    lab.down(progress=lambda _m: None)
    assert leftovers(lab) == []
    lab.down(progress=lambda _m: None)
    assert leftovers(lab) == []


def test_down_cleans_up_after_a_crash_midway_through_up(tmp_path: Path) -> None:
    lab = Lab(f"c{int(time.time()) % 100000}")
    subnet = free_subnet()
    up = subprocess.Popen(
        [str(VENV_BIN / "wap"), "lab", "--lab", lab.name, "up", "--hosts", "6", "--subnet", subnet],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # Crash once some hosts exist and others do not yet.
        def second_host_made() -> bool:
            assert up.poll() is None, "up finished before it could be interrupted"
            return f"wap-{lab.name}-lab2" in list_netns()

        wait_until(
            second_host_made,
            timeout=30,
            every=0.005,
            what=f"`wap lab up` to make {lab.name}'s second host",
            seen=lambda: [n for n in list_netns() if n.startswith(f"wap-{lab.name}-")],
        )
        up.send_signal(signal.SIGKILL)
        up.wait()
        assert leftovers(lab), "the crash should leave a half-made lab behind"
        # A new `up` refuses to build over the remains, and says what to do.
        with pytest.raises(LabError, match="wap lab down"):
            lab.up(2, free_subnet(), progress=lambda _m: None)
    finally:
        if up.poll() is None:
            up.kill()
        down = subprocess.run(
            [str(VENV_BIN / "wap"), "lab", "--lab", lab.name, "down"],
            capture_output=True, text=True,
        )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert leftovers(lab) == []


def test_subnet_is_checked_against_the_machines_routes(lab3: LabHosts) -> None:
    other = Lab(f"o{lab3.lab.name[1:]}"[:8])
    with pytest.raises(LabError, match=r"overlaps the machine's route"):
        other.up(1, lab3.lab.state().subnet, progress=lambda _m: None)
    assert not other.dir.exists()
    with pytest.raises(LabError, match="not an IPv4 network"):
        other.up(1, "10.213.0.1/24", progress=lambda _m: None)


def test_lab_refuses_to_run_without_root(monkeypatch, capsys) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert wap_main(["lab", "up", "--hosts", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs root" in err and "Traceback" not in err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))

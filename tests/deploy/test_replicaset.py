"""deploy_replicaset.yml on lab hosts with the double's tarball: check mode on bare hosts, the
secured lab example deployed from bare hosts, then re-runs, check mode, growth and shrinking of
the same set; the agents deployed by deploy_agent.yml on the set and on a host without MongoDB,
shipping to a platform listening on the lab's bridge.

The tests share one lab and run in file order: each one starts from what the previous one left
(bare hosts, then 3 members, then 5, then 4).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pymongo
import pytest

from tests.deploy.deployment import (
    ADMIN,
    APP,
    Deployment,
    PlaybookRun,
    PrimaryWatch,
    build_agent_wheelhouse,
    build_double_tarball,
    home_is_private,
    wait_healthy,
)
from tests.deploy.writes import WriteCounter
from tests.waiting import wait_until
from tests.webui.conftest import (  # noqa: F401 (fixtures, found by pytest)
    allowed_endpoints,
    processes,
    redis_url,
    store_server,
)
from tests.webui.helpers import PASSWORD, Api, Proc, env_for, free_port, wait_healthy_web
from webui.config import load_settings
from webui.services import metrics
from webui.store import Store

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]

REPLICASET = "replicaset.yml"
CONVERGE = "Initiate the replica set or converge its members"


@pytest.fixture(scope="module")
def bare(deployment_factory) -> Deployment:
    """A 5-host lab where nothing is deployed yet."""
    return deployment_factory(5)


@pytest.fixture(scope="module")
def rs(bare: Deployment) -> Deployment:
    """The lab example (inventory/lab/replicaset.yml) deployed on lab1..lab3 of the lab."""
    bare.first = bare.run("deploy_replicaset.yml", REPLICASET)
    return bare


def grown(rs: Deployment) -> dict:
    """Five members with new priorities: lab1 stays the preferred primary."""
    priorities = {"lab1": 3, "lab2": 2, "lab3": 1, "lab4": 0.5, "lab5": 0.5}
    return {
        "wap_replicaset_hosts": list(priorities),
        "mongodb_replicaset_members": [
            {"host": rs.address(host), "priority": p} for host, p in priorities.items()
        ],
    }


def config_members(rs: Deployment) -> dict[str, float]:
    with rs.client(replicaSet="rs0") as client:
        config = client.admin.command("replSetGetConfig")["config"]
    return {m["host"]: m["priority"] for m in config["members"]}


def test_check_mode_on_bare_hosts_reports_and_changes_nothing(bare: Deployment) -> None:
    check = bare.run("deploy_replicaset.yml", REPLICASET, check=True)
    assert check.returncode == 0, check.failures()
    assert all(check.changed()[h] > 0 for h in ("lab1", "lab2", "lab3"))
    members = ", ".join(bare.address(h) for h in ("lab1", "lab2", "lab3"))
    planned = check.results("Show the steps taken (planned, in check mode)")["lab1"]["msg"]
    assert planned == [f"initiate rs0 with {members}"]
    for host in ("lab1", "lab2", "lab3"):
        leftovers = bare.lab.ssh(host, "ls -d /opt/mongodb /etc/mongodb /var/lib/mongodb"
                                 " /etc/systemd/system/mongod@.service; getent passwd mongodb",
                                 check=False)  # fmt: skip
        assert leftovers.stdout == "", leftovers.stdout
    assert not bare.secrets.exists()  # no keyFile, CA or certificate generated either


def test_secured_three_member_set_deploys(rs: Deployment) -> None:
    assert rs.first.returncode == 0, rs.first.failures()
    with rs.client(replicaSet="rs0") as client:
        status = wait_healthy(client, 3)
        states = sorted(m["stateStr"] for m in status["members"])
        assert states == ["PRIMARY", "SECONDARY", "SECONDARY"]
        assert all(m["health"] == 1 for m in status["members"])
        assert client.admin.command("hello")["primary"] == rs.address("lab1")  # priority 2
    with rs.client(replicaSet="rs0", user=APP, authSource="app") as app:
        app.app.events.insert_one({"deployed": True})
        assert app.app.events.count_documents({}) == 1
    # Where the notes say things are, as the service account and modes they need.
    out = rs.lab.ssh(
        "lab2",
        "systemctl is-active mongod@rs0; systemctl is-enabled mongod@rs0;"
        " readlink /usr/local/bin/mongod; stat -c '%U %a' /etc/mongodb/keyfile"
        " /etc/mongodb/tls/server.pem /var/lib/mongodb/rs0;"
        " test -s /var/log/mongodb/rs0.log && echo log",
    ).stdout.split("\n")
    assert out[:3] == ["active", "enabled", "/opt/mongodb/7.0.14/bin/mongod"]
    assert out[3:7] == ["mongodb 400", "mongodb 400", "mongodb 750", "log"]
    assert home_is_private(rs.secrets)


def test_unauthenticated_commands_are_refused(rs: Deployment) -> None:
    with rs.client(user=None, directConnection=True) as anonymous:
        assert anonymous.admin.command("hello")["setName"] == "rs0"  # allowed without a user
        for command in ("listDatabases", "replSetGetStatus"):
            with pytest.raises(pymongo.errors.OperationFailure) as refused:
                anonymous.admin.command(command)
            assert refused.value.code == 13  # Unauthorized
        with pytest.raises(pymongo.errors.OperationFailure):
            anonymous.app.events.find_one()
    with rs.client(user=("admin", "wrong"), directConnection=True) as wrong:
        with pytest.raises(pymongo.errors.OperationFailure) as failed:
            wrong.admin.command("ping")
        assert failed.value.code == 18  # AuthenticationFailed
    # requireTLS: a plain connection gets no answer.
    plain = pymongo.MongoClient(rs.lab.hosts["lab1"], 27017, directConnection=True,
                                serverSelectionTimeoutMS=3000)  # fmt: skip
    with plain, pytest.raises(pymongo.errors.PyMongoError):
        plain.admin.command("hello")


def test_second_run_changes_nothing_and_keeps_the_admin(rs: Deployment) -> None:
    with rs.client(replicaSet="rs0") as client:
        before = client.admin.command("usersInfo", "admin")["users"][0]["userId"]
    again = rs.run("deploy_replicaset.yml", REPLICASET)
    assert again.returncode == 0, again.failures()
    assert again.changed() == {"lab1": 0, "lab2": 0, "lab3": 0}
    # The security role's admin entry ran on every member and authenticated instead of failing
    # with "requires authentication" or creating the user again.
    admin = again.results("Create the first administrator, or check that it authenticates")
    assert sorted(admin) == ["lab1", "lab2", "lab3"]
    assert not any(r.get("bootstrapped") or r.get("changed") for r in admin.values())
    with rs.client(replicaSet="rs0") as client:
        assert client.admin.command("usersInfo", "admin")["users"][0]["userId"] == before


AGENT_INTERVAL = 3


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_agent_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


def ini_uris(text: str) -> list[str]:
    lines = text.split("[mongodb]")[1].split("[queue]")[0].splitlines()
    return [line.strip() for line in lines if line.strip().startswith("mongodb://")]


def test_agents_deployed_by_the_role_ship_every_host_and_member(
    rs: Deployment,
    wheelhouse: Path,
    tmp_path: Path,
    store_server: str,  # noqa: F811
    redis_url: str,  # noqa: F811
    processes: list[Proc],  # noqa: F811
) -> None:
    # The platform where the lab hosts reach it: the bridge's address on this machine.
    gateway = rs.lab.lab.state().hosts["lab1"].gateway
    settings = load_settings({
        "WAP_DATA_DIR": str(tmp_path / "data"), "WAP_BIND": f"{gateway}:{free_port()}",
        "WAP_MONGODB_URI": f"{store_server}/wap_agents_{free_port()}", "WAP_REDIS_URL": redis_url,
        "WAP_RUNTIME_DIR": str(tmp_path / "run"),
    })  # fmt: skip
    web = Proc([sys.executable, "-m", "wap.cli", "web"], tmp_path / "web.log", env_for(settings))
    processes.append(web)
    base = f"http://{settings.bind}"
    wait_healthy_web(web, base, timeout=30, what="wap web on the lab bridge")
    api = Api(base)
    # Set up from another address than the machine's loopback: with the setup link's token.
    setup = f"/setup?token={(settings.data_dir / 'setup_token').read_text().strip()}"
    form = {"csrf_token": api.csrf(setup), "username": "admin", "password": PASSWORD,
            "password2": PASSWORD}  # fmt: skip
    assert api.http.post(base + setup, data=form).ok
    api_token = api.use_token("agents")
    project = api.call("POST", "/projects", json={"name": "agents"}).json()
    hosts = ["lab1", "lab2", "lab3", "lab4"]  # lab4 runs no MongoDB
    ids = {}
    for host in hosts:
        made = api.call("POST", f"/projects/{project['id']}/hosts",
                        json={"name": host, "address": rs.lab.hosts[host]})  # fmt: skip
        assert made.status_code == 201, made.text
        ids[host] = made.json()["id"]

    # The role asks the platform for each host's token (none on the hosts yet).
    agent_vars = {
        "wap_agent_hosts": ",".join(hosts), "wap_agent_wheelhouse": str(wheelhouse),
        "wap_agent_platform_url": base, "wap_agent_api_token": api_token,
        "wap_agent_project_id": project["id"], "wap_test_host_ids": ids,
        "wap_agent_host_id": "{{ wap_test_host_ids[inventory_hostname] }}",
        "wap_agent_interval": AGENT_INTERVAL,
        "mongodb_security_admin_user": ADMIN[0], "mongodb_security_admin_password": ADMIN[1],
        # Backups by the agent asked for on lab1 alone: its allow-list and its user's roles.
        "wap_agent_backup_commands": "{{ inventory_hostname == 'lab1' }}",
    }  # fmt: skip
    first = rs.run("deploy_agent.yml", **agent_vars)
    assert first.returncode == 0, first.failures()
    assert all(first.changed()[h] > 0 for h in hosts)
    again = rs.run("deploy_agent.yml", **agent_vars)
    assert again.returncode == 0, again.failures()
    assert again.changed() == dict.fromkeys(hosts, 0)

    # On every host: the service, its files and modes; the MongoDB password stays on the host.
    for host in hosts:
        files = "/etc/wap-agent/agent.ini /etc/wap-agent/token /etc/wap-agent/mongodb-password"
        out = rs.lab.ssh(host, "systemctl is-active wap-agent; systemctl is-enabled wap-agent;"
                         f" stat -c '%n %U:%G %a' {files} 2>/dev/null; cat /etc/wap-agent/agent.ini"
                         ).stdout  # fmt: skip
        lines = out.splitlines()
        assert lines[:4] == ["active", "enabled", "/etc/wap-agent/agent.ini root:wap-agent 640",
                             "/etc/wap-agent/token wap-agent:wap-agent 600"], out  # fmt: skip
        uris = ini_uris(out)
        allowed = "ping, collect, backup, restore" if host == "lab1" else "ping, collect"
        assert f"allow = {allowed}" in lines  # no backup nor restore unless asked
        if host == "lab4":
            assert uris == [] and "mongodb-password" not in out
            continue
        assert lines[4] == "/etc/wap-agent/mongodb-password root:root 600"
        password = rs.lab.ssh(host, "cat /etc/wap-agent/mongodb-password").stdout.strip()
        assert len(password) == 32
        assert uris == [f"mongodb://wap-agent-{host}:{password}@localhost:27017/?authSource=admin"
                        "&tls=true&tlsCAFile=/etc/wap-agent/mongodb-ca.pem"]  # fmt: skip
        for run in (first, again):
            assert password not in json.dumps(run.output) and password not in run.stderr
    with rs.client(replicaSet="rs0") as client:
        users = {u["user"]: u["roles"] for u in client.admin.command("usersInfo")["users"]}
    monitoring = [("clusterMonitor", "admin"), ("read", "local")]
    backups = [("backup", "admin"), ("clusterMonitor", "admin"), ("read", "local"),
               ("restore", "admin")]  # fmt: skip
    for host in ("lab1", "lab2", "lab3"):
        roles = sorted((r["role"], r["db"]) for r in users[f"wap-agent-{host}"])
        assert roles == (backups if host == "lab1" else monitoring), host

    # Every host's samples reach the platform, and every member's as that member.
    store = Store(settings.mongodb_uri or "")

    def latest(host: str, name: str) -> dict[str, float] | None:
        """The host's newest batch (name -> value) once it holds the series `name`."""
        batches = metrics.host_batches(store, ids[host], fields=("samples",))
        values = {s["n"]: s["v"] for s in batches[-1]["samples"]} if batches else {}
        return values if name in values else None

    def arrived(host: str, name: str) -> dict[str, float]:
        return wait_until(lambda: latest(host, name), timeout=2 * AGENT_INTERVAL + 30,
                          every=0.5, what=f"{name} from {host}")  # fmt: skip

    try:
        for host in hosts:
            seen = arrived(host, "host_memory_total_bytes")
            if host == "lab4":
                assert not any(name.startswith("mongodb_") for name in seen)
                continue
            member = arrived(host, "mongodb_replset_my_state")
            assert member["mongodb_up"] == 1
            assert member["mongodb_replset_my_state"] in (1, 2)  # PRIMARY or SECONDARY
    finally:
        store.close()


def test_check_mode_reports_growth_and_changes_nothing(rs: Deployment) -> None:
    with rs.client(replicaSet="rs0") as client:
        version = client.admin.command("replSetGetConfig")["config"]["version"]
    conf = rs.lab.ssh("lab1", "md5sum /etc/mongodb/rs0.conf").stdout

    check = rs.run("deploy_replicaset.yml", REPLICASET, check=True, **grown(rs))

    assert check.returncode == 0, check.failures()
    changed = check.changed()
    assert changed["lab4"] > 0 and changed["lab5"] > 0  # install, files, configuration
    assert changed["lab2"] == 0 and changed["lab3"] == 0
    plan = check.results(CONVERGE)["lab1"]
    assert plan["changed"] is True
    changes = [c for step in plan["steps"] for c in step["changes"]]
    assert f"update {rs.address('lab1')}: priority 2 -> 3" in changes
    assert f"update {rs.address('lab2')}: priority 1 -> 2" in changes
    assert any(c.startswith(f"add {rs.address('lab4')}") for c in changes)
    assert any(c.startswith(f"add {rs.address('lab5')}") for c in changes)
    # Nothing happened: not on the set, not on the new hosts, not in the controller's secrets.
    with rs.client(replicaSet="rs0") as client:
        config = client.admin.command("replSetGetConfig")["config"]
    assert config["version"] == version and len(config["members"]) == 3
    assert rs.lab.ssh("lab1", "md5sum /etc/mongodb/rs0.conf").stdout == conf
    for host in ("lab4", "lab5"):
        leftovers = rs.lab.ssh(host, "ls -d /opt/mongodb /etc/mongodb /var/lib/mongodb"
                               " /etc/systemd/system/mongod@.service", check=False)  # fmt: skip
        assert leftovers.stdout == "", leftovers.stdout
        assert not (rs.secrets / f"{host}.pem").exists()


def test_grow_to_five_members_with_new_priorities_in_one_run(rs: Deployment) -> None:
    wanted = grown(rs)
    watched = [rs.address(h) for h in ("lab1", "lab2", "lab3")]
    with PrimaryWatch(watched, rs.secrets / "ca.pem") as watch:
        grow = rs.run("deploy_replicaset.yml", REPLICASET, **wanted)
    assert grow.returncode == 0, grow.failures()
    priorities = {m["host"]: m["priority"] for m in wanted["mongodb_replicaset_members"]}
    assert config_members(rs) == priorities
    with rs.client(replicaSet="rs0") as client:
        status = wait_healthy(client, 5)
    assert sorted(m["stateStr"] for m in status["members"]) == ["PRIMARY"] + ["SECONDARY"] * 4
    assert watch.samples > 10 and watch.without_primary == [], watch.without_primary
    assert watch.primaries == {rs.address("lab1")}


def test_remove_a_member_keeps_a_primary(rs: Deployment) -> None:
    wanted = grown(rs)
    wanted["wap_replicaset_hosts"].remove("lab5")
    wanted["mongodb_replicaset_members"].pop()
    watched = [rs.address(h) for h in ("lab1", "lab2", "lab3")]
    with PrimaryWatch(watched, rs.secrets / "ca.pem") as watch:
        shrink = rs.run("deploy_replicaset.yml", REPLICASET, **wanted)
    assert shrink.returncode == 0, shrink.failures()
    steps = shrink.results(CONVERGE)["lab1"]["steps"]
    removed = [f"remove {rs.address('lab5')} (no longer wanted)"]
    assert [c for s in steps for c in s["changes"]] == removed
    assert rs.address("lab5") not in config_members(rs)
    with rs.client(replicaSet="rs0") as client:
        status = wait_healthy(client, 4)
    assert sorted(m["stateStr"] for m in status["members"]) == ["PRIMARY"] + ["SECONDARY"] * 3
    assert watch.samples > 10 and watch.without_primary == [], watch.without_primary


def test_info_and_role_modules_on_the_set(rs: Deployment) -> None:
    info = rs.module("lab1", "mongodb_info")
    assert (info["version"], info["fcv"], info["topology"]) == ("7.0.14", "7.0", "replicaset")
    assert sorted(m["state"] for m in info["members"]) == ["PRIMARY"] + ["SECONDARY"] * 3
    assert {(u["db"], u["user"]) for u in info["users"]} >= {("admin", "admin"), ("app", "app")}
    assert not any("credentials" in u for u in info["users"])

    reads = {"resource": {"db": "app", "collection": "events"}, "actions": ["find"]}
    role = {"name": "reporting", "database": "app", "replica_set": "rs0", "privileges": [reads]}
    assert rs.module("lab1", "mongodb_role", check=True, **role)["changed"] is True
    with rs.client(replicaSet="rs0") as client:
        assert client.app.command("rolesInfo", "reporting")["roles"] == []  # check mode
    assert rs.module("lab1", "mongodb_role", **role)["changed"] is True
    assert rs.module("lab1", "mongodb_role", **role)["changed"] is False
    with rs.client(replicaSet="rs0") as client:
        found = client.app.command("rolesInfo", "reporting", showPrivileges=True)["roles"]
        assert found[0]["privileges"] == [reads]
    assert rs.module("lab1", "mongodb_role", state="absent", **role)["changed"] is True
    with rs.client(replicaSet="rs0") as client:
        assert client.app.command("rolesInfo", "reporting")["roles"] == []


UPGRADE_TO = "8.0.4"


@pytest.fixture(scope="module")
def upgrade_vars(rs: Deployment, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """upgrade_cluster.yml's variables for the set's members (four, after the tests above): the
    double's 8.0 tarball."""
    tarball = build_double_tarball(tmp_path_factory.mktemp("double80"), UPGRADE_TO)
    members = config_members(rs)
    return {"wap_upgrade_hosts": [h for h in rs.lab.hosts if rs.address(h) in members],
            "mongodb_upgrade_version": UPGRADE_TO,
            "mongodb_upgrade_tarballs": [str(tarball)]}  # fmt: skip


def versions_and_fcvs(rs: Deployment, hosts: list[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for host in hosts:
        with rs.client(host, directConnection=True) as client:
            fcv = client.admin.command("getParameter", 1, featureCompatibilityVersion=1)
            version = client.admin.command("buildInfo")["version"]
            out[host] = (version, fcv["featureCompatibilityVersion"]["version"])
    return out


def test_upgrade_check_mode_shows_the_plan_and_a_downgrade_past_the_fcv_is_refused(
    rs: Deployment, upgrade_vars: dict
) -> None:
    hosts = upgrade_vars["wap_upgrade_hosts"]
    check = rs.run("upgrade_cluster.yml", REPLICASET, check=True, **upgrade_vars)
    assert check.returncode == 0, check.failures()
    plan = check.results("Show the plan (check mode stops here)")["lab1"]["msg"]
    members = ", ".join(rs.address(h) for h in hosts)
    assert plan == [f"upgrade of rs0 to {UPGRADE_TO}:",
                    f"binaries {UPGRADE_TO} on {members}, one at a time",
                    "FCV 8.0 (confirm: true)"]  # fmt: skip
    refused = rs.run("upgrade_cluster.yml", REPLICASET, **dict(upgrade_vars,
                     mongodb_upgrade_version="6.0.20"))  # fmt: skip
    assert refused.returncode != 0
    assert "Upgrade to 6.0.20 refused: 6.0.20 cannot start on data files of FCV 7.0" in (
        refused.failures()
    )
    # Nothing moved: not the versions, not the FCV, not the binaries on the hosts.
    assert set(versions_and_fcvs(rs, hosts).values()) == {("7.0.14", "7.0")}
    assert rs.lab.ssh("lab2", "ls /opt/mongodb").stdout.split() == ["7.0.14"]


def release_of(rs: Deployment, host: str) -> str:
    try:
        with rs.client(host, directConnection=True, serverSelectionTimeoutMS=2000) as client:
            return client.admin.command("buildInfo")["version"]
    except pymongo.errors.PyMongoError:
        return ""


def primary_of(rs: Deployment, hosts: list[str]) -> str | None:
    for host in hosts:
        try:
            with rs.client(host, directConnection=True, serverSelectionTimeoutMS=2000) as client:
                if client.admin.command("hello").get("isWritablePrimary"):
                    return host
        except pymongo.errors.PyMongoError:
            continue
    return None


def test_upgrade_to_8_0_with_its_primary_killed_midway_keeps_every_acknowledged_write(
    rs: Deployment, upgrade_vars: dict
) -> None:
    """The upgrade under a w:majority write load; once a first member runs 8.0, the primary is
    killed (SIGKILL; systemd starts it again on the binaries it had). Whether that run then
    stops or goes on, running it again finishes the upgrade, and every acknowledged write is
    there; a last run changes nothing."""
    hosts = upgrade_vars["wap_upgrade_hosts"]
    watched = [rs.address(h) for h in hosts]
    runs: list[PlaybookRun] = []
    with (
        rs.client(replicaSet="rs0", user=APP, authSource="app") as app,
        PrimaryWatch(watched, rs.secrets / "ca.pem") as watch,
        WriteCounter(app) as counter,
    ):
        first = threading.Thread(
            target=lambda: runs.append(rs.run("upgrade_cluster.yml", REPLICASET, **upgrade_vars))
        )
        first.start()
        moved = lambda: any(release_of(rs, h) == UPGRADE_TO for h in hosts)  # noqa: E731
        wait_until(lambda: moved() or not first.is_alive(), timeout=600, every=0.5,
                   what="a first member on 8.0")  # fmt: skip
        assert first.is_alive(), runs[0].failures() if runs else "the first run ended early"
        killed = wait_until(lambda: primary_of(rs, hosts), timeout=120, what="the primary")
        rs.lab.ssh(killed, "systemctl kill --signal=SIGKILL mongod@rs0.service")
        first.join(900)
        assert runs, "the first run did not end"
        again = rs.run("upgrade_cluster.yml", REPLICASET, **upgrade_vars)
        assert again.returncode == 0, again.failures()
    assert versions_and_fcvs(rs, hosts) == {h: (UPGRADE_TO, "8.0") for h in hosts}
    assert len(counter.acknowledged) > 20
    with rs.client(replicaSet="rs0", user=APP, authSource="app") as app:
        assert counter.missing(app) == []
    assert watch.samples > 10 and len(watch.primaries) >= 2  # the killed one, then another
    with rs.client(replicaSet="rs0") as client:
        wait_healthy(client, len(hosts))
    if runs[0].returncode == 0:  # the first run went on past the kill: nothing was left
        assert set(again.changed().values()) == {0}
    else:
        last = rs.run("upgrade_cluster.yml", REPLICASET, **upgrade_vars)
        assert last.returncode == 0, last.failures()
        assert set(last.changed().values()) == {0}


def test_takeover_playbook_reads_the_whole_set_from_one_member(
    rs: Deployment, upgrade_vars: dict
) -> None:
    """takeover_cluster.yml from a terminal, on the set as WAP's own playbooks left it: every
    member, the version and FCV of the upgrade above, keyFile and requireTLS; the application's
    user (readWrite on app only) is refused, naming the role it lacks."""
    hosts = upgrade_vars["wap_upgrade_hosts"]
    read = {"wap_takeover_address": rs.address("lab2"), "wap_takeover_tls": True,
            "wap_takeover_tls_ca_file": str(rs.secrets / "ca.pem"),
            "mongodb_replicaset_login_user": ADMIN[0],
            "mongodb_replicaset_login_password": ADMIN[1]}  # fmt: skip
    found = rs.run("takeover_cluster.yml", **read)
    assert found.returncode == 0, found.failures()
    deployment = found.results(f"Read the deployment, {rs.address('lab2')}")["localhost"][
        "deployment"
    ]
    members = {m["host"]: (m["version"], m["state"]) for m in deployment["sets"][0]["members"]}
    assert set(members) == {rs.address(h) for h in hosts}
    assert {v for v, _ in members.values()} == {UPGRADE_TO}
    assert sorted(s for _, s in members.values()) == ["PRIMARY"] + ["SECONDARY"] * (len(hosts) - 1)
    assert (deployment["topology"], deployment["name"], deployment["fcv"]) == (
        "replicaset", "rs0", "8.0")  # fmt: skip
    assert deployment["security"]["auth"] is True
    assert (deployment["security"]["cluster_auth"], deployment["security"]["tls"]) == (
        "keyFile", "requireTLS")  # fmt: skip
    assert deployment["hosts"] == sorted(rs.lab.hosts[h] for h in hosts)
    refused = rs.run("takeover_cluster.yml", **dict(read, mongodb_replicaset_login_user=APP[0],
                     mongodb_replicaset_login_password=APP[1],
                     wap_takeover_login_database="app"))  # fmt: skip
    assert refused.returncode != 0
    assert (
        "(app@app) lacks the roles needed to take the deployment over: clusterMonitor on "
        "admin (its roles: readWrite@app)" in refused.failures().replace("\n", " ")
    )


def test_member_operations_restart_stop_and_start_and_a_stop_past_the_majority_is_refused(
    rs: Deployment, upgrade_vars: dict
) -> None:
    """member_operation.yml on the set's hosts: a secondary restarted through its service while a
    client sees a primary, a stop that leaves a majority, then a second stop refused with the
    reason (nothing changed), and the stopped member started again and caught up."""
    hosts = upgrade_vars["wap_upgrade_hosts"]
    on = {"wap_member_hosts": hosts}

    def member(host: str, operation: str, **extra) -> PlaybookRun:
        return rs.run("member_operation.yml", REPLICASET, **on, wap_member=rs.address(host),
                      wap_member_operation=operation, **extra)  # fmt: skip

    with PrimaryWatch([rs.address(h) for h in hosts], rs.secrets / "ca.pem") as watch:
        restart = member("lab2", "restart")
    assert restart.returncode == 0, restart.failures()
    shown = next(iter(restart.results("Show the plan (check mode stops here)").values()))
    assert shown["msg"][1:] == [
        f"stop {rs.address('lab2')}",
        f"start {rs.address('lab2')} and wait until it serves again, caught up"]  # fmt: skip
    assert watch.samples > 3 and not watch.without_primary
    stop = member("lab3", "stop")
    assert stop.returncode == 0, stop.failures()
    state = rs.lab.ssh("lab3", "systemctl is-active mongod@rs0.service", check=False)
    assert state.stdout.strip() == "inactive"
    voters = len(hosts)
    refused = member("lab2", "stop")
    assert refused.returncode != 0
    assert (
        f"stopping {rs.address('lab2')} would leave {voters - 2} of {voters} voting members"
        f" up: a majority needs {voters // 2 + 1}, so no primary could be elected (down "
        f"already: {rs.address('lab3')})"
    ) in refused.failures().replace("\n", " ")
    assert rs.lab.ssh("lab2", "systemctl is-active mongod@rs0.service").stdout.strip() == "active"
    start = member("lab3", "start")
    assert start.returncode == 0, start.failures()
    with rs.client(replicaSet="rs0") as client:
        wait_healthy(client, voters)

    # A resync: lab3 stopped, its data directory emptied (a file left there goes too), started:
    # it copies the set again (initial sync) and serves with every document.
    with rs.client(replicaSet="rs0", w="majority") as client:
        client.app.resynced.insert_many([{"n": i} for i in range(200)])
    rs.lab.ssh("lab3", "touch /var/lib/mongodb/rs0/left-by-the-test")
    resync = member("lab3", "resync")
    assert resync.returncode == 0, resync.failures()
    marker = rs.lab.ssh("lab3", "ls /var/lib/mongodb/rs0/left-by-the-test", check=False)
    assert marker.returncode != 0, "the data directory was not emptied"
    with rs.client("lab3", directConnection=True) as lab3:
        assert lab3.admin.command("hello")["secondary"]
        assert lab3.app.resynced.count_documents({}) == 200
    with rs.client(replicaSet="rs0") as client:
        wait_healthy(client, voters)

"""Agent footprint bench: CPU and memory of `wap-agent run` beside Debian's
prometheus-node-exporter plus prometheus-mongodb-exporter, all reading the same mongod double (a
one-member replica set) at the same interval, with 10 and with 10,000 collections.

The agent collects the host and the mongod every interval and ships each round to a stand-in
platform on 127.0.0.1 that acknowledges every batch (and answers its command polls empty); the
exporters are scraped at the same interval, the mongodb exporter with its database and collection
collectors on (what the agent's size survey covers). Each process's CPU seconds over the window
(user + system, from /proc through psutil) and its resident memory (mean and peak of a sample a
second) are printed side by side, with the load of the machine (`uptime`) at the time. Not a
test: figures only.

Usage: python -m tests.bench.agent_footprint [--collections 10,10000] [--intervals 10,1]
       [--seconds 60] [--profile DIR]

Debian's prometheus-mongodb-exporter (1.0.0+git20180522) cannot read MongoDB 5.1 or later, the
double (which answers as 7.0 does) included: its driver, mgo, sends getnonce and then every
command as OP_QUERY, which mongod refuses since 5.1 except for the handshake (hello, isMaster;
UnsupportedOpQueryCommand, 352; getnonce itself is gone since 6.2), so it reports no MongoDB
series (mongodb_up 0 or absent). Its figures are what it costs while it tries: a floor, not
what a working mongodb exporter would cost.

The agent runs from a virtualenv of its own holding only the agent and its dependencies, made by
/usr/bin/python3, as the role `whaleal.wap.wap_agent` installs it on a host (built once per run
in a temporary directory, pip from the package index or its cache); `--agent dev` runs the
repository's development virtualenv's `wap-agent` instead, whose editable installs and extra
path hooks cost the process about 2 MiB more.

--profile DIR runs the agent under cProfile (DIR/agent-<collections>-<interval>s.prof), to find
where its time goes; its CPU figures then include the profiler's own cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psutil
import pymongo

from tests.waiting import wait_until
from tests.webui.helpers import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOUBLE = ROOT / "tests" / "mongod_double"
AGENT = pathlib.Path(sys.executable).with_name("wap-agent")
NODE_EXPORTER = "prometheus-node-exporter"
MONGODB_EXPORTER = "prometheus-mongodb-exporter"
DATABASES = 10  # the collections are spread over this many databases


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- the mongod double ------------------------------------------------------------------------


def start_double(dbpath: pathlib.Path) -> tuple[subprocess.Popen, int]:
    """A one-member replica set (so that the replica set and oplog collectors have work)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mongod_double", "--port", str(port), "--bind_ip", "127.0.0.1",
         "--dbpath", str(dbpath), "--logpath", str(dbpath / "mongod.log"), "--replSet", "rs0"],
        env={**os.environ, "PYTHONPATH": str(DOUBLE)},
    )  # fmt: skip
    wait_until(lambda: proc.poll() is not None or listening(port), timeout=30, what="the double")
    if proc.poll() is not None:
        raise SystemExit(f"the double exited with {proc.returncode}")
    with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true") as client:
        client.admin.command(
            "replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]}
        )
        wait_until(lambda: client.admin.command("hello").get("isWritablePrimary"), timeout=60,
                   what="the double's primary")  # fmt: skip
    return proc, port


def populate(port: int, collections: int) -> float:
    """Up to ``collections`` collections of one document each, over DATABASES databases; the
    seconds it took."""
    started = time.monotonic()
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    with pymongo.MongoClient(uri) as client:
        dbs = range(min(DATABASES, collections))
        have = sum(len(client[f"db{d}"].list_collection_names()) for d in dbs)
        for i in range(have, collections):
            client[f"db{i % DATABASES}"][f"c{i}"].insert_one({"i": i, "pad": "x" * 100})
    return time.monotonic() - started


# -- the stand-in platform --------------------------------------------------------------------


class Platform(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PlatformHandler)
        self.batches = 0
        self.bytes = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class PlatformHandler(BaseHTTPRequestHandler):
    """Acknowledges every batch (200); a command poll waits its ``wait`` and finds nothing."""

    server: Platform

    def log_message(self, format: str, *args: object) -> None:
        return

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the agent stopped during a poll
            self.wfile.write(data)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if urlsplit(self.path).path.endswith("/agent/samples"):
            with self.server.lock:
                self.server.batches += len(json.loads(raw)["batches"])
                self.server.bytes += len(raw)
        self._answer({})

    def do_GET(self) -> None:
        wait = float(parse_qs(urlsplit(self.path).query).get("wait", ["0"])[0])
        time.sleep(min(wait, 60.0))
        self._answer({"commands": []})


# -- the processes measured -------------------------------------------------------------------


@dataclass
class Measured:
    name: str
    proc: subprocess.Popen
    rss: list[float] = field(default_factory=list)
    cpu_start: float = 0.0
    cpu_end: float = 0.0

    def cpu(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def installed_agent(where: pathlib.Path) -> pathlib.Path:
    """A virtualenv with only the agent in it, made by the Python the role uses on a host
    (`wap_agent_python`, /usr/bin/python3), as the role installs it."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys._base_executable
    subprocess.run([python, "-m", "venv", str(where)], check=True)
    subprocess.run(
        [str(where / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         str(ROOT / "agent")],
        check=True,
    )  # fmt: skip
    return where / "bin" / "wap-agent"


def start_agent(work: pathlib.Path, platform: Platform, uri: str, interval: float,
                profile: pathlib.Path | None, agent: pathlib.Path) -> subprocess.Popen:  # fmt: skip
    (work / "token").write_text("wapa_bench\n")
    (work / "agent.ini").write_text(
        f"[platform]\nurl = {platform.url}\ntoken_file = {work / 'token'}\n"
        f"[agent]\ninterval = {interval:g}\nhost_metrics = yes\nlog_level = WARNING\n"
        f"[mongodb]\nuris = {uri}\n[queue]\ndir = {work / 'queue'}\n"
    )
    command = [str(agent), "run", "--config", str(work / "agent.ini")]
    if profile is not None:
        python = agent.with_name("python")
        command = [str(python), "-m", "cProfile", "-o", str(profile), *command]
    return subprocess.Popen(command, stderr=open(work / "agent.log", "wb"))


def start_exporters(work: pathlib.Path, uri: str) -> tuple[subprocess.Popen, int,
                                                           subprocess.Popen, int]:  # fmt: skip
    node_port, mongo_port = free_port(), free_port()
    node = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{node_port}"],
        stderr=open(work / "node_exporter.log", "wb"),  # noqa: SIM115
    )
    mongo = subprocess.Popen(
        [MONGODB_EXPORTER, "-mongodb.uri", uri, "-web.listen-address", f"127.0.0.1:{mongo_port}",
         "-mongodb.collect.database", "-mongodb.collect.collection", "-logtostderr"],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "mongodb_exporter.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    for port in (node_port, mongo_port):
        wait_until(lambda p=port: listening(p), timeout=30, what=f"an exporter on {port}")
    return node, node_port, mongo, mongo_port


class Scraper(threading.Thread):
    """GETs one exporter's /metrics every interval, as Prometheus would (a scrape that takes
    longer than the interval delays only the next scrape of that exporter)."""

    def __init__(self, port: int, interval: float, stopped: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval = interval
        self.stopped = stopped
        self.last = ""
        self.seconds: list[float] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as answer:
                    self.last = answer.read().decode()
            except OSError as exc:
                self.last = f"# scrape failed: {exc}"
            self.seconds.append(time.monotonic() - started)
            self.stopped.wait(max(0.0, self.interval - (time.monotonic() - started)))


def series_value(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return line.rsplit(" ", 1)[-1]
    return "absent"


def measure(processes: list[Measured], seconds: float) -> None:
    for m in processes:
        m.cpu_start = m.cpu()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for m in processes:
            m.rss.append(psutil.Process(m.proc.pid).memory_info().rss / 2**20)
        time.sleep(1.0)
    for m in processes:
        m.cpu_end = m.cpu()


def one_run(port: int, collections: int, interval: float, seconds: float,
            profile_dir: pathlib.Path | None, agent_path: pathlib.Path) -> dict:  # fmt: skip
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    platform = Platform()
    threading.Thread(target=platform.serve_forever, daemon=True).start()
    work = pathlib.Path(tempfile.mkdtemp(prefix="wap-footprint-"))
    profile = None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        profile = profile_dir / f"agent-{collections}-{interval:g}s.prof"
    agent = Measured("wap-agent", start_agent(work, platform, uri, interval, profile, agent_path))
    # mgo, the exporter's driver, refuses directConnection: the seed alone (one member anyway).
    node, node_port, mongo, mongo_port = start_exporters(work, f"mongodb://127.0.0.1:{port}")
    measured = [agent, Measured("node_exporter", node), Measured("mongodb_exporter", mongo)]
    stopped = threading.Event()
    scrapers = {
        name: Scraper(port, interval, stopped)
        for name, port in (("node_exporter", node_port), ("mongodb_exporter", mongo_port))
    }
    for scraper in scrapers.values():
        scraper.start()
    try:
        # Warm up: the agent's first rounds (and a size survey) and the exporters' first scrapes.
        time.sleep(max(3 * interval, 10.0))
        measure(measured, seconds)
        delivered = platform.batches
    finally:
        stopped.set()
        for m in measured:
            m.stop()
        platform.shutdown()
        platform.server_close()
    mongo_text = scrapers["mongodb_exporter"].last
    out = {
        "collections": collections,
        "interval": interval,
        "seconds": seconds,
        "batches": delivered,
        "mongodb_exporter_up": series_value(mongo_text, "mongodb_up"),
        "mongodb_exporter_series": sum(
            1 for line in mongo_text.splitlines() if line.startswith("mongodb_")
        ),
        "node_exporter_series": sum(
            1 for line in scrapers["node_exporter"].last.splitlines() if line[:1] != "#"
        ),
        "scrapes": {name: len(s.seconds) for name, s in scrapers.items()},
        "scrape_seconds_max": {name: max(s.seconds, default=0.0) for name, s in scrapers.items()},
    }
    for m in measured:
        out[m.name] = {
            "cpu_s_per_min": (m.cpu_end - m.cpu_start) * 60.0 / seconds,
            "rss_mib_mean": sum(m.rss) / len(m.rss),
            "rss_mib_max": max(m.rss),
        }
    errors = (work / "mongodb_exporter.log").read_text(errors="replace").strip().splitlines()
    out["mongodb_exporter_error"] = errors[-1][-200:] if errors else ""
    shutil.rmtree(work, ignore_errors=True)
    return out


def report(row: dict) -> None:
    a, n, m = row["wap-agent"], row["node_exporter"], row["mongodb_exporter"]
    both_cpu = n["cpu_s_per_min"] + m["cpu_s_per_min"]
    both_rss = n["rss_mib_mean"] + m["rss_mib_mean"]
    print(
        f"{row['collections']:>6} coll {row['interval']:>4g}s | "
        f"agent {a['cpu_s_per_min']:6.2f} cpu-s/min {a['rss_mib_mean']:6.1f} MiB "
        f"(max {a['rss_mib_max']:.1f}) | node_exporter {n['cpu_s_per_min']:5.2f} "
        f"{n['rss_mib_mean']:5.1f} MiB | mongodb_exporter {m['cpu_s_per_min']:5.2f} "
        f"{m['rss_mib_mean']:5.1f} MiB (mongodb_up {row['mongodb_exporter_up']}) | "
        f"exporters together {both_cpu:5.2f} cpu-s/min {both_rss:5.1f} MiB | "
        f"batches {row['batches']}",
        flush=True,
    )
    if row["mongodb_exporter_error"]:
        print(f"    mongodb_exporter says: {row['mongodb_exporter_error']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collections", default="10,10000")
    parser.add_argument("--intervals", default="10,1")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per run")
    parser.add_argument("--profile", type=pathlib.Path, default=None)
    parser.add_argument("--json", action="store_true", help="also print each row as JSON")
    parser.add_argument(
        "--agent",
        choices=("installed", "dev"),
        default="installed",
        help="the agent from a virtualenv of its own (as on a host) or this one's",
    )
    args = parser.parse_args()
    for tool in (NODE_EXPORTER, MONGODB_EXPORTER):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: scripts/install (install.d/60-monitoring.sh)")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"cpus: {os.cpu_count()}; window {args.seconds:g} s per run", flush=True)
    with tempfile.TemporaryDirectory(prefix="wap-footprint-db-") as dbpath:
        agent_path = AGENT
        if args.agent == "installed":
            agent_path = installed_agent(pathlib.Path(dbpath) / "agent-venv")
        print(f"agent: {agent_path}", flush=True)
        proc, port = start_double(pathlib.Path(dbpath))
        try:
            made = 0
            for collections in sorted(int(c) for c in args.collections.split(",")):
                took = populate(port, collections)
                print(f"{collections} collections ready ({took:.0f} s to add {collections - made})",
                      flush=True)  # fmt: skip
                made = collections
                for interval in (float(i) for i in args.intervals.split(",")):
                    row = one_run(
                        port, collections, interval, args.seconds, args.profile, agent_path
                    )
                    report(row)
                    if args.json:
                        print(json.dumps(row), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()

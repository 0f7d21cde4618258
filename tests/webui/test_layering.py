"""webui stands below the command line: it builds and serves its app, and every module of it
imports, without loading `wap.cli` (the CLI loads webui, never the other way round)."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.webui.helpers import env_for
from webui.config import REPO_ROOT, Settings
from webui.store import COLLECTIONS

CODE = """
import importlib, pkgutil, sys
import webui
from webui.wsgi import production_app

app = production_app()
assert "wap.store" in app.extensions
for module in pkgutil.walk_packages(webui.__path__, "webui."):
    importlib.import_module(module.name)
loaded = sorted(m for m in sys.modules if m == "wap.cli" or m.startswith("wap.cli."))
assert not loaded, loaded
print("ok")
"""


def test_webui_never_imports_the_command_line(settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CODE], env=env_for(settings), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("ok")


# Modules that do not touch the store's collections themselves: the job side goes through its
# data-access module (webui/jobs/store.py), Socket.IO, `wap up`, the pages and the API through
# the services.
NO_COLLECTIONS = sorted(
    {*(REPO_ROOT / "webui" / "jobs").glob("*.py"), *(REPO_ROOT / "webui" / "views").glob("*.py"),
     *(REPO_ROOT / "webui" / "api").glob("*.py"), REPO_ROOT / "webui" / "sockets.py",
     REPO_ROOT / "webui" / "embedded.py"} - {REPO_ROOT / "webui" / "jobs" / "store.py"}
)  # fmt: skip


def collection_uses(source: str) -> list[str]:
    """`<...store>.<collection>` and `<...store>.db` in a module's source, as `line: expression`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or node.attr not in {*COLLECTIONS, "db"}:
            continue
        owner = node.value
        name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if "store" in name.lower():
            found.append((node.lineno, node.col_offset, ast.unparse(node)))
    return [f"{line}: {text}" for line, _, text in sorted(found)]


def test_the_job_side_reaches_the_store_through_one_module() -> None:
    names = {p.name for p in NO_COLLECTIONS}
    assert names >= {"runner.py", "tasks.py", "reaper.py", "sink.py", "worker.py", "sockets.py",
                     "embedded.py", "backups.py", "member_ops.py"}, names  # fmt: skip
    uses = {
        str(path.relative_to(REPO_ROOT)): collection_uses(path.read_text())
        for path in NO_COLLECTIONS
    }
    assert {path: found for path, found in uses.items() if found} == {}


def test_the_layering_check_sees_a_collection_reached_directly() -> None:
    source = "def f(self, store, records):\n    store.jobs.find()\n    records.job(store, 1)\n" \
        "    return self.store.db, self.run_store.job_events\n"  # fmt: skip
    assert collection_uses(source) == [
        "2: store.jobs", "4: self.store.db", "4: self.run_store.job_events"
    ]  # fmt: skip

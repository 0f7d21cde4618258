"""webui stands below the command line: it builds and serves its app, and every module of it
imports, without loading `wap.cli` (the CLI loads webui, never the other way round)."""

from __future__ import annotations

import subprocess
import sys

from tests.webui.helpers import env_for
from webui.config import Settings

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

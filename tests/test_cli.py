"""`wap`: every command and subcommand answers --help, through the console script and
`python -m wap.cli` alike."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tests.labhosts import VENV_BIN
from wap.cli import build_parser, main


def commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every command line that names a (sub)command, without its arguments."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found.extend(commands(sub, (*prefix, name)))
    return found


ALL = commands(build_parser())


def test_the_commands_are_all_there() -> None:
    assert {c[0] for c in ALL} == {"lab", "plan", "up", "web", "worker"}
    assert ("lab", "up") in ALL and ("lab", "ssh") in ALL


@pytest.mark.parametrize("command", ALL, ids=" ".join)
def test_help(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: wap {' '.join(command)}")


@pytest.mark.parametrize(
    "argv", [[str(VENV_BIN / "wap")], [sys.executable, "-m", "wap.cli"]], ids=["wap", "python -m"]
)
def test_help_of_the_installed_command(argv: list[str]) -> None:
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("lab", "plan", "up", "web", "worker"):
        assert f"\n    {name} " in done.stdout
    up = subprocess.run([*argv, "up", "--help"], capture_output=True, text=True, timeout=60)
    assert up.returncode == 0 and "--workers" in up.stdout


def test_the_command_line_loads_webui_only_to_run_a_platform_command() -> None:
    code = (
        "import sys\n"
        "from wap.cli import build_parser\n"
        "build_parser().parse_args(['web'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'webui')\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_command_error_is_one_line_and_exit_2(tmp_path) -> None:
    done = subprocess.run(
        [str(VENV_BIN / "wap"), "plan", str(tmp_path / "missing.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("wap plan: cannot read ") and "Traceback" not in done.stderr

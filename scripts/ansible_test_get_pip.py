"""Stand-in for the get-pip script `ansible-test --venv` downloads from a host unreachable here.

ansible-test first looks for a cached copy at ~/.ansible/test/cache/get_pip_<version>.py; with
`--install` this file copies itself there for the pip version the installed ansible-test asks for.
Run by ansible-test, it bootstraps pip with ensurepip and then installs the packages it was given.
ensurepip runs in a subprocess: in-process it sets PIP_CONFIG_FILE=/dev/null, which would drop the
machine's pip settings (certificate bundle, index) from the install that follows.
"""

import shutil
import subprocess
import sys
from pathlib import Path


def install_stand_in() -> None:
    from ansible_test._internal.python_requirements import get_venv_packages

    class _Python:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"

    version = get_venv_packages(_Python())["pip"]
    target = Path.home() / ".ansible/test/cache" / f"get_pip_{version.replace('.', '_')}.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_bytes() != Path(__file__).read_bytes():
        shutil.copyfile(__file__, target)


def bootstrap(args: list[str]) -> int:
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True)
    wanted = [a for a in args if a not in ("--no-setuptools", "--no-wheel")]
    return subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade", *wanted])


if __name__ == "__main__":
    if sys.argv[1:] == ["--install"]:
        install_stand_in()
    else:
        sys.exit(bootstrap(sys.argv[1:]))

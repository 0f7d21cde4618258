"""Install the collections whaleal.wap depends on, and their own dependencies, from the `ansible`
wheel (which bundles them) instead of Galaxy, which is unreachable here.

    extract_collections.py ANSIBLE_WHEEL COLLECTIONS_DIR

COLLECTIONS_DIR is an `ansible_collections` folder; every other collection in it is left alone.
"""

import json
import shutil
import sys
import zipfile
from pathlib import Path

import yaml

PREFIX = "ansible_collections/"


def main(wheel: str, dest: str) -> None:
    target = Path(dest)
    wanted = list(yaml.safe_load((target / "whaleal/wap/galaxy.yml").read_text())["dependencies"])
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        done: set[str] = set()
        while wanted:
            fqcn = wanted.pop()
            if fqcn in done:
                continue
            done.add(fqcn)
            folder = PREFIX + fqcn.replace(".", "/") + "/"
            members = [n for n in names if n.startswith(folder)]
            if not members:
                sys.exit(f"{fqcn} is not in {wheel}: pick an ansible release that bundles it")
            print(f"==> {fqcn} from {Path(wheel).name}")
            shutil.rmtree(target / fqcn.replace(".", "/"), ignore_errors=True)
            archive.extractall(target.parent, members)
            manifest = json.loads(archive.read(folder + "MANIFEST.json"))
            wanted += list(manifest["collection_info"].get("dependencies") or {})


if __name__ == "__main__":
    main(*sys.argv[1:])

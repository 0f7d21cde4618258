"""What a job's variables may be: data, under the names its playbook documents.

- Names. `ansible_*` and Ansible's reserved names (play keywords such as `become` or
  `environment`, magic variables such as `hostvars`) are refused to everyone: how a host is reached
  and with which privilege comes from the hosts the platform registers. An operator may set only
  what the playbook documents (`playbook_variables`): the `wap_*` variables named in its header
  comment, its plays' `vars`, and the options of the roles it runs (their argument specs), less
  the ones that name a file or directory on the controller (the worker) and the ones the platform
  or an importing playbook sets itself. Admins may set other names too: free-form, audited.
- Values are data. A string holding Jinja delimiters is refused, and any string that could be a
  template reaches ansible-playbook tagged `!unsafe` (`unsafe_yaml`), so that no value from a user
  is ever rendered.
- Host patterns. A variable a play's `hosts:` reads may name only the job's own hosts and groups:
  never `localhost`, which Ansible would run on the worker itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nodes
import yaml
from ansible.vars.reserved import get_reserved_names

from webui.config import REPO_ROOT

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TEMPLATE_MARKERS = ("{{", "{%", "{#")
# Magic variables Ansible sets for every host (besides the `ansible_*` ones).
MAGIC = frozenset(
    ("groups", "group_names", "hostvars", "inventory_hostname", "inventory_hostname_short",
     "inventory_dir", "inventory_file", "play_hosts", "playbook_dir", "role_name", "role_names",
     "role_path", "item", "environment", "vars")
)  # fmt: skip
FORBIDDEN = frozenset(get_reserved_names()) | MAGIC
# Set by the platform from what it stores (the plan, a credential's public half and endpoint, the
# cluster's name) or naming a file on the worker: never from a request.
PLATFORM = frozenset(
    ("wap_plan", "wap_ssh_public_key", "wap_ssh_private_key_file", "wap_aws_endpoint_url",
     "wap_cluster_name")
)  # fmt: skip
COLLECTION_ROLES = REPO_ROOT / "collections" / "ansible_collections" / "whaleal" / "wap" / "roles"
ROLE_DIRS = (REPO_ROOT / "roles",)
MODULE_KEYS = ("include_role", "import_role")
TASK_LISTS = ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")
HOST_PATTERN_SPLIT = re.compile(r"[:,]")
UNSAFE_TAG = "!unsafe"
CONDITIONS = ("when", "that", "changed_when", "failed_when", "until")


@dataclass(frozen=True)
class PlaybookVariables:
    """The variables a playbook documents, and those that choose its hosts."""

    documented: frozenset[str]
    host_patterns: frozenset[str]


class _Loader(yaml.SafeLoader):
    """Reads playbooks as data: tags such as `!unsafe` or `!vault` give their plain value."""


_Loader.add_multi_constructor("!", lambda loader, _suffix, node: loader.construct_scalar(node))


def _referenced(text: Any) -> set[str]:
    """The variables a Jinja string reads."""
    if not isinstance(text, str) or "{{" not in text:
        return set()
    try:
        tree = jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError:
        return set()
    return {node.name for node in tree.find_all(jinja2.nodes.Name) if node.ctx == "load"}


def _header_names(text: str) -> set[str]:
    """`wap_*` names in the playbook's leading comment, where our playbooks document them."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.strip() in ("", "---"):
            continue
        if not line.lstrip().startswith("#"):
            break
        names.update(re.findall(r"\bwap_[a-z0-9_]+\b", line))
    return names


def _role_dir(name: str) -> Path | None:
    if name.startswith("whaleal.wap."):
        path = COLLECTION_ROLES / name.rsplit(".", 1)[1]
        return path if path.is_dir() else None
    for base in ROLE_DIRS:
        if "." not in name and (base / name).is_dir():
            return base / name
    return None


@functools.lru_cache(maxsize=64)
def _role_options(path: Path, mtime: float) -> frozenset[str]:
    """Options of every entry point of a role's argument specs, but those on the controller."""
    specs = path / "meta" / "argument_specs.yml"
    if not specs.is_file():
        return frozenset()
    data = yaml.load(specs.read_text(), Loader=_Loader) or {}
    names = set()
    for entry in (data.get("argument_specs") or {}).values():
        for option, spec in ((entry or {}).get("options") or {}).items():
            description = " ".join(map(str, _as_list((spec or {}).get("description"))))
            if "controller" not in description.lower():
                names.add(option)
    return frozenset(names)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _tasks(items: Any) -> Iterator[dict[str, Any]]:
    for task in _as_list(items):
        if not isinstance(task, dict):
            continue
        yield task
        for key in TASK_LISTS:
            yield from _tasks(task.get(key))


def _included_role(task: dict[str, Any]) -> str | None:
    for key, value in task.items():
        if key.rsplit(".", 1)[-1] in MODULE_KEYS:
            name = value.get("name") if isinstance(value, dict) else value
            return name if isinstance(name, str) else None
    return None


def _play_roles(play: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(role name, the vars the playbook gives it) for every role a play runs."""
    for entry in _as_list(play.get("roles")):
        if isinstance(entry, str):
            yield entry, {}
        elif isinstance(entry, dict):
            name = entry.get("role") or entry.get("name")
            if isinstance(name, str):
                yield name, entry.get("vars") or {}
    for key in TASK_LISTS:
        for task in _tasks(play.get(key)):
            name = _included_role(task)
            if name:
                yield name, task.get("vars") or {}


def _expressions(value: Any, key: str = "") -> Iterator[str]:
    """Every template of a playbook: strings with `{{`, and conditions (bare expressions)."""
    if isinstance(value, str):
        if key in CONDITIONS and "{{" not in value:
            yield "{{ " + value + " }}"
        else:
            yield value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _expressions(item, str(name))
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item, key)


@dataclass
class _Found:
    header: set[str]  # wap_* names in the header comments
    used: set[str]  # variables the playbooks' templates read
    documented: set[str]  # plays' vars and the options of the roles they run
    patterns: set[str]  # variables a play's hosts read
    fixed: set[str]  # variables the playbooks set themselves


def _analyse(path: Path, found: _Found, seen: set[Path]) -> None:
    """Collect what a playbook, and those it imports, document and use."""
    text = path.read_text()
    plays = _as_list(yaml.load(text, Loader=_Loader))
    found.header |= _header_names(text)
    for string in _expressions(plays):
        found.used |= _referenced(string)
    for play in plays:
        if not isinstance(play, dict):
            continue
        imported = play.get("import_playbook") or play.get("ansible.builtin.import_playbook")
        if isinstance(imported, str):
            found.fixed.update(play.get("vars") or {})
            target = (path.parent / imported).resolve()
            if "{{" not in imported and target.is_file() and target not in seen:
                seen.add(target)
                _analyse(target, found, seen)
            continue
        for hosts in _as_list(play.get("hosts")):
            found.patterns |= _referenced(hosts)
        found.documented.update(n for n in play.get("vars") or {} if not str(n).startswith("_"))
        for name, given in _play_roles(play):
            found.fixed.update(given)
            role = _role_dir(name)
            if role is not None:
                specs = role / "meta" / "argument_specs.yml"
                mtime = specs.stat().st_mtime if specs.exists() else 0.0
                found.documented |= _role_options(role, mtime)


@functools.lru_cache(maxsize=64)
def _cached(path: Path, mtime: float) -> PlaybookVariables:
    found = _Found(set(), set(), set(), set(), set())
    _analyse(path, found, {path})
    documented = found.documented | (found.header & found.used)
    allowed = documented - found.fixed - PLATFORM - FORBIDDEN
    patterns = found.patterns - found.fixed
    return PlaybookVariables(
        frozenset(n for n in allowed | patterns if not n.startswith("ansible_")),
        frozenset(patterns),
    )


def playbook_variables(path: Path) -> PlaybookVariables:
    """What the playbook at `path` documents (re-read when the file changes)."""
    return _cached(path.resolve(), path.stat().st_mtime)


def forbidden_name(name: str) -> str | None:
    """Why nobody may set this variable from a request, or None."""
    if not NAME_RE.match(name):
        return "not an Ansible variable name"
    if name.startswith("ansible_"):
        return (
            "ansible_* variables (connection, interpreter, privilege) come from the registered"
            " hosts, not from a request"
        )
    if name in FORBIDDEN:
        return "a name Ansible reserves (a play keyword or a magic variable)"
    return None


def template_paths(value: Any, path: str) -> list[str]:
    """Where a value holds Jinja delimiters (its keys too): `path`, `path.key`, `path[0]`..."""
    found: list[str] = []
    if isinstance(value, str):
        if any(marker in value for marker in TEMPLATE_MARKERS):
            found.append(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            found += template_paths(key, f"{path} (a key)")
            found += template_paths(item, f"{path}.{key}")
    elif isinstance(value, list):
        for number, item in enumerate(value):
            found += template_paths(item, f"{path}[{number}]")
    return found


def host_pattern_error(value: Any, names: set[str]) -> str | None:
    """Why a host-pattern value is refused: it must name only the job's hosts and groups."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) for i in items):
        return "a host or group name of this job, or a list of them"
    for item in items:
        for part in HOST_PATTERN_SPLIT.split(item):
            part = part.strip().lstrip("!&")
            if part not in names:
                return (
                    f"{part!r} is not a host or group of this job: one of "
                    f"{', '.join(sorted(names))}"
                )
    return None


class _UnsafeDumper(yaml.SafeDumper):
    """Strings that could be templates (any holding `{`: every Jinja delimiter starts with one) as
    `!unsafe`, which Ansible never renders; keys (variable and field names) stay plain strings.
    Other strings stay plain, quoted: ansible-core 2.19 reads an `!unsafe` scalar with YAML's
    implicit types, so `!unsafe "yes"` would become true (no implicit type contains `{`)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_mapping(self, tag: str, mapping: Any, flow_style: Any = None) -> yaml.Node:
        node = super().represent_mapping(tag, mapping, flow_style)
        for key, _ in node.value:
            if key.tag == UNSAFE_TAG:
                key.tag = "tag:yaml.org,2002:str"
        return node


def _unsafe_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "{" in value:
        return dumper.represent_scalar(UNSAFE_TAG, value, style='"')
    return dumper.represent_str(value)


_UnsafeDumper.add_representer(str, _unsafe_str)


def unsafe_yaml(variables: dict[str, Any], trusted: dict[str, Any] | None = None) -> str:
    """A vars file for `-e @file`: `variables` (data: never rendered), then `trusted`
    (templates the platform itself writes, such as lookups of the job's environment)."""
    text = yaml.dump(variables, Dumper=_UnsafeDumper, sort_keys=True) if variables else ""
    if trusted:
        text += yaml.safe_dump(trusted, sort_keys=True)
    return text or "{}\n"

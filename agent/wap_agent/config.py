"""The agent's configuration file: INI (stdlib configparser), one section per concern, so that
the agent role templates it with plain lines.

    [platform]
    url = https://wap.example.com:8080
    ca_file = /etc/wap-agent/ca.pem
    token_file = /etc/wap-agent/token

    [agent]
    interval = 10
    host_metrics = yes

    [mongodb]
    uris =
        mongodb://monitor:PW@127.0.0.1:27017/?authSource=admin

    [queue]
    dir = /var/lib/wap-agent/queue
    max_bytes = 256M
    max_age = 86400

    [commands]
    allow = ping, collect
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
COMMAND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class ConfigError(ValueError):
    """The file cannot be used: the message names the file, the setting and what is expected."""


@dataclass(frozen=True)
class AgentConfig:
    url: str
    token_file: Path
    queue_dir: Path
    ca_file: Path | None = None
    interval: float = 10.0
    host_metrics: bool = True
    mongodb_uris: tuple[str, ...] = ()
    timeout_ms: int = 5000
    dbstats_per_round: int = 10
    collections_per_round: int = 20
    top_collections: int = 20
    survey_every: float = 60.0  # seconds between two size surveys (0: every round)
    queue_max_bytes: int = 256 * 1024**2
    queue_max_age: float = 86400.0
    batches_per_request: int = 30
    request_bytes: int = 1000 * 1000
    request_timeout: float = 30.0
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    log_level: str = "INFO"
    # the commands the platform may ask of this agent (read-only ones by default)
    commands_allow: tuple[str, ...] = ("ping", "collect")
    command_workers: int = 4  # commands running at once
    poll_wait: float = 25.0  # seconds a poll for commands waits on the platform

    @property
    def encrypted(self) -> bool:
        return urlsplit(self.url).scheme == "https"


def parse_size(value: str, name: str) -> int:
    """``1048576``, ``512K``, ``256M``, ``1G`` (powers of 1024)."""
    text = value.strip().lower().removesuffix("b")
    unit = text[-1:] if text[-1:] in ("k", "m", "g") else ""
    number = text[: -len(unit)] if unit else text
    try:
        size = int(float(number) * SIZE_UNITS[unit])
    except ValueError:
        raise ConfigError(f"{name} = {value!r} is not a size (e.g. 1048576, 512K, 256M)") from None
    if size <= 0:
        raise ConfigError(f"{name} = {value!r} must be more than 0")
    return size


def _number(raw: str, name: str, minimum: float, kind: type = float) -> float:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} = {raw!r} is not a {kind.__name__}") from None
    if value < minimum:
        raise ConfigError(f"{name} = {raw!r} must be at least {minimum:g}")
    return value


def load(path: Path) -> AgentConfig:
    """Read and check ``path``; every error says which setting and what is expected."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not an INI file: {exc}") from None

    def get(section: str, key: str, default: str | None = None) -> str | None:
        return parser.get(section, key, fallback=default)

    def where(section: str, key: str) -> str:
        return f"{path}: [{section}] {key}"

    url = (get("platform", "url") or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where('platform', 'url')} = {url!r}: the platform's address, "
            "https://host:port (http only when the platform runs without TLS)"
        )
    token_file = get("platform", "token_file")
    if not token_file:
        raise ConfigError(f"{where('platform', 'token_file')} is missing: the agent token's file")
    ca_file = get("platform", "ca_file")
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f"{where('platform', 'ca_file')} = {ca_file}: no such file")
    queue_dir = get("queue", "dir")
    if not queue_dir:
        raise ConfigError(f"{where('queue', 'dir')} is missing: where batches wait to be sent")
    try:
        host_metrics = parser.getboolean("agent", "host_metrics", fallback=True)
    except ValueError:
        raise ConfigError(f"{where('agent', 'host_metrics')} must be yes or no") from None
    uris = tuple(u.strip() for u in (get("mongodb", "uris") or "").splitlines() if u.strip())
    for uri in uris:
        if not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError(f"{where('mongodb', 'uris')}: one mongodb:// URI per line")

    def num(section: str, key: str, default: float, minimum: float, kind: type = float) -> float:
        raw = get(section, key)
        return default if raw is None else _number(raw, where(section, key), minimum, kind)

    def size(section: str, key: str, default: int) -> int:
        raw = get(section, key)
        return default if raw is None else parse_size(raw, where(section, key))

    backoff_min = num("sender", "backoff_min", 1.0, 0.01)
    allow_raw = get("commands", "allow")
    allow = AgentConfig.commands_allow
    if allow_raw is not None:
        allow = tuple(name for name in re.split(r"[\s,]+", allow_raw) if name)
    for name in allow:
        if not COMMAND_NAME.match(name):
            raise ConfigError(
                f"{where('commands', 'allow')}: {name!r} is not a command's name "
                "(names such as ping, collect, backup, separated by commas or spaces)"
            )
    return AgentConfig(
        url=url,
        token_file=Path(token_file),
        queue_dir=Path(queue_dir),
        ca_file=Path(ca_file) if ca_file else None,
        interval=num("agent", "interval", 10.0, 0.05),
        host_metrics=host_metrics,
        mongodb_uris=uris,
        timeout_ms=int(num("mongodb", "timeout_ms", 5000, 1, int)),
        dbstats_per_round=int(num("mongodb", "dbstats_per_round", 10, 1, int)),
        collections_per_round=int(num("mongodb", "collections_per_round", 20, 1, int)),
        top_collections=int(num("mongodb", "top_collections", 20, 0, int)),
        survey_every=num("mongodb", "survey_every", 60.0, 0.0),
        queue_max_bytes=size("queue", "max_bytes", 256 * 1024**2),
        queue_max_age=num("queue", "max_age", 86400.0, 1.0),
        batches_per_request=int(num("sender", "batches_per_request", 30, 1, int)),
        request_bytes=size("sender", "request_bytes", 1000 * 1000),
        request_timeout=num("sender", "timeout", 30.0, 0.1),
        backoff_min=backoff_min,
        backoff_max=max(backoff_min, num("sender", "backoff_max", 60.0, 0.01)),
        log_level=(get("agent", "log_level") or "INFO").upper(),
        commands_allow=allow,
        command_workers=int(num("commands", "workers", 4, 1, int)),
        poll_wait=min(60.0, num("commands", "poll_wait", 25.0, 1.0)),  # the platform's bound
    )

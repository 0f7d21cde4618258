"""Settings of the platform, read from `WAP_*` environment variables in this one module.

Every process (web server, worker, `wap up`) builds the same `Settings` from its environment; the
secret key and the credential key are generated once and kept in the data dir when not given, so a
second start on the same data dir finds the same keys (and can decrypt the stored credentials).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BIND = "127.0.0.1:8080"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it and says what is expected."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str
    port: int
    mongodb_uri: str | None
    redis_url: str | None
    secret_key: str
    credential_key: str
    playbooks_dir: Path
    ansible_config: Path | None
    runtime_dir: Path
    queue_name: str = "wap-jobs"
    job_timeout: int = 4 * 3600
    heartbeat_interval: float = 5.0
    lost_after: float = 30.0
    secure_cookies: bool = False
    workers: int = 2
    login_max_failures: int = 5
    login_lockout: float = 300.0
    proxies: int = 0
    allowed_endpoints: tuple[str, ...] = ()
    worker_user: str | None = None
    tls_cert: Path | None = None  # TLS on when set (with tls_key): given, or under data_dir/tls
    tls_key: Path | None = None
    tls_ca: Path | None = None  # the CA bundle offered at /ca.pem
    tls_auto: bool = False
    tls_names: tuple[str, ...] = ()
    hsts_max_age: int = 365 * 86400
    agent_max_body: int = 1024 * 1024  # bytes of one agent request (413 beyond)
    agent_requests_per_minute: int = 120  # per agent (429 beyond)
    metrics_raw_retention: float = 86400.0  # raw samples kept (seconds)
    metrics_1m_retention: float = 14 * 86400.0  # 1-minute rollups kept
    metrics_1h_retention: float = 365 * 86400.0  # 1-hour rollups kept
    metrics_rollup_every: float = 120.0  # 1-minute windows rolled in slices of this many seconds
    public_url: str = ""  # the platform as agents on MongoDB hosts reach it (empty: no agents)
    agent_wheelhouse: Path | None = None  # the agent's wheelhouse (agent/build-wheelhouse)

    @property
    def bind(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        """Where this web server is reached directly (not through a proxy)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/wap")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wap"


def parse_bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"WAP_BIND={value!r} is not host:port (expected e.g. {DEFAULT_BIND})")
    return host.strip("[]"), int(port)


def _public_url(env: Mapping[str, str]) -> str:
    """WAP_PUBLIC_URL: scheme, host and port only, e.g. https://wap.example.com:8080."""
    url = (env.get("WAP_PUBLIC_URL") or "").strip().rstrip("/")
    if url and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", url):
        raise SettingsError(
            f"WAP_PUBLIC_URL {url!r}: the platform as MongoDB hosts reach it, "
            "http(s)://host:port with no path (https when WAP runs TLS)"
        )
    return url


def _number(
    env: Mapping[str, str], name: str, default: float, kind: type = float, zero_ok: bool = False
) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if value < 0 or (value == 0 and not zero_ok):
        raise SettingsError(
            f"{name}={raw!r} must be {'0 or more' if zero_ok else 'greater than 0'}"
        )
    return value


def _keep_secret(path: Path, make: str) -> str:
    """Read the secret kept at `path`, creating it (mode 0600) with `make` when absent."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(make + "\n")
    return make


def _runtime_dir(env: Mapping[str, str], data_dir: Path) -> Path:
    """Where job dirs live: RAM (/dev/shm) when there is one, so nothing of a job touches a disk."""
    if env.get("WAP_RUNTIME_DIR"):
        return Path(env["WAP_RUNTIME_DIR"])
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"wap-{os.geteuid()}"
    return data_dir / "run"


def _tls(env: Mapping[str, str], data_dir: Path) -> dict[str, object]:
    """TLS settings: WAP_TLS=auto (a CA of WAP's own) or WAP_TLS_CERT + WAP_TLS_KEY (yours);
    the files themselves are checked by webui.tls.prepare where a server starts."""
    mode = (env.get("WAP_TLS") or "").strip().lower()
    cert, key = env.get("WAP_TLS_CERT") or "", env.get("WAP_TLS_KEY") or ""
    names = tuple(n.strip() for n in (env.get("WAP_TLS_NAMES") or "").split(",") if n.strip())
    if mode not in ("", "off", "auto"):
        raise SettingsError(
            f"WAP_TLS={env.get('WAP_TLS')!r} is not 'auto' or 'off' (to serve your own "
            "certificate, set WAP_TLS_CERT and WAP_TLS_KEY and leave WAP_TLS unset)"
        )
    if mode and (cert or key):
        raise SettingsError(
            f"WAP_TLS={mode} and WAP_TLS_CERT/WAP_TLS_KEY are both set: unset WAP_TLS to serve "
            "your certificate, or unset WAP_TLS_CERT and WAP_TLS_KEY"
        )
    if bool(cert) != bool(key):
        missing = "WAP_TLS_KEY" if cert else "WAP_TLS_CERT"
        raise SettingsError(f"{missing} is not set: WAP_TLS_CERT and WAP_TLS_KEY go together")
    if mode == "auto":
        tls_dir = data_dir / "tls"
        return {
            "tls_cert": tls_dir / "server.pem",
            "tls_key": tls_dir / "server.key",
            "tls_ca": tls_dir / "ca.pem",
            "tls_auto": True,
            "tls_names": names,
        }
    if cert:
        ca = env.get("WAP_TLS_CA")
        return {
            "tls_cert": Path(cert).expanduser().resolve(),
            "tls_key": Path(key).expanduser().resolve(),
            "tls_ca": Path(ca).expanduser().resolve() if ca else None,
        }
    return {}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_dir = Path(env.get("WAP_DATA_DIR") or default_data_dir()).expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"WAP_DATA_DIR {data_dir} cannot be created: {exc.strerror}") from None
    host, port = parse_bind(env.get("WAP_BIND") or DEFAULT_BIND)
    secret_key = env.get("WAP_SECRET_KEY") or _keep_secret(
        data_dir / "secret_key", secrets.token_urlsafe(48)
    )
    credential_key = env.get("WAP_CREDENTIAL_KEY") or _keep_secret(
        data_dir / "credential_key", base64.urlsafe_b64encode(os.urandom(32)).decode()
    )
    ansible_cfg = env.get("WAP_ANSIBLE_CONFIG") or str(REPO_ROOT / "ansible.cfg")
    tls = _tls(env, data_dir)
    return Settings(
        data_dir=data_dir,
        host=host,
        port=port,
        mongodb_uri=env.get("WAP_MONGODB_URI") or None,
        redis_url=env.get("WAP_REDIS_URL") or None,
        secret_key=secret_key,
        credential_key=credential_key,
        playbooks_dir=Path(env.get("WAP_PLAYBOOKS_DIR") or REPO_ROOT / "playbooks").resolve(),
        ansible_config=Path(ansible_cfg) if Path(ansible_cfg).is_file() else None,
        runtime_dir=_runtime_dir(env, data_dir),
        queue_name=env.get("WAP_QUEUE") or "wap-jobs",
        job_timeout=int(_number(env, "WAP_JOB_TIMEOUT", 4 * 3600, int)),
        heartbeat_interval=_number(env, "WAP_HEARTBEAT_INTERVAL", 5.0),
        lost_after=_number(env, "WAP_LOST_AFTER", 30.0),
        secure_cookies=bool(tls)
        or env.get("WAP_SECURE_COOKIES", "").lower() in ("1", "true", "yes"),
        workers=int(_number(env, "WAP_WORKERS", 2, int)),
        login_max_failures=int(_number(env, "WAP_LOGIN_MAX_FAILURES", 5, int)),
        login_lockout=_number(env, "WAP_LOGIN_LOCKOUT", 300.0),
        proxies=int(_number(env, "WAP_PROXIES", 0, int, zero_ok=True)),
        allowed_endpoints=tuple(
            e.strip() for e in (env.get("WAP_ALLOWED_ENDPOINTS") or "").split(",") if e.strip()
        ),
        worker_user=env.get("WAP_WORKER_USER") or None,
        hsts_max_age=int(_number(env, "WAP_HSTS_MAX_AGE", 365 * 86400, int, zero_ok=True)),
        agent_max_body=int(_number(env, "WAP_AGENT_MAX_BODY", 1024 * 1024, int)),
        agent_requests_per_minute=int(_number(env, "WAP_AGENT_REQUESTS_PER_MINUTE", 120, int)),
        metrics_raw_retention=_number(env, "WAP_METRICS_RAW_RETENTION", 86400.0),
        metrics_1m_retention=_number(env, "WAP_METRICS_1M_RETENTION", 14 * 86400.0),
        metrics_1h_retention=_number(env, "WAP_METRICS_1H_RETENTION", 365 * 86400.0),
        metrics_rollup_every=_number(env, "WAP_METRICS_ROLLUP_EVERY", 120.0),
        public_url=_public_url(env),
        agent_wheelhouse=Path(
            env.get("WAP_AGENT_WHEELHOUSE") or data_dir / "agent-wheelhouse"
        ).expanduser(),
        **tls,  # type: ignore[arg-type]
    )


def require_services(settings: Settings) -> None:
    """Refuse to start a web server or worker that has no store or Redis to talk to."""
    missing = [
        name
        for name, value in (
            ("WAP_MONGODB_URI", settings.mongodb_uri),
            ("WAP_REDIS_URL", settings.redis_url),
        )
        if not value
    ]
    if missing:
        raise SettingsError(
            f"{' and '.join(missing)} not set: run `wap up` to start the embedded store and Redis, "
            "or set them to your MongoDB replica set and Redis server"
        )

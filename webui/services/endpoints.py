"""Which cloud and S3 endpoints a credential or a job may send signed requests to.

By default only AWS's own: https to a name under amazonaws.com (or amazonaws.com.cn). An admin adds
others in WAP_ALLOWED_ENDPOINTS (a comma-separated list of host names, IP addresses or networks,
each with an optional port: `s3.internal.example`, `127.0.0.1`, `10.20.0.0/16`, `minio:9000`); a
listed endpoint may use http. Anything else (the instance metadata address, the platform's Redis,
any internal address) is refused where a URL is stored and again where a job would use it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from webui.config import Settings

AWS_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn")


def _host_port(entry: str) -> tuple[str, int | None]:
    entry = entry.strip().lower()
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port) if port.isdigit() else None
    return entry, None


def _listed(settings: Settings, host: str, port: int) -> bool:
    for entry in settings.allowed_endpoints:
        allowed_host, allowed_port = _host_port(entry)
        if allowed_port is not None and allowed_port != port:
            continue
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(allowed_host, strict=False):
                return True
        except ValueError:
            if host == allowed_host:
                return True
    return False


def endpoint_error(settings: Settings, url: str) -> str | None:
    """Why this endpoint URL is refused, or None when the policy allows it."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "not a URL (expected e.g. https://ec2.eu-west-1.amazonaws.com)"
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return "an http(s) URL such as https://ec2.eu-west-1.amazonaws.com"
    if parts.username is not None or parts.password is not None:
        return "no user or password in the URL"
    port = port or (443 if parts.scheme == "https" else 80)
    if _listed(settings, host, port):
        return None
    if parts.scheme == "https" and host.endswith(AWS_SUFFIXES) and not _is_address(host):
        return None
    allowed = ", ".join(settings.allowed_endpoints) or "none"
    return (
        f"{host}:{port} is not an allowed endpoint: AWS's own (https://*.amazonaws.com) or one an"
        f" admin lists in WAP_ALLOWED_ENDPOINTS (now: {allowed})"
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_endpoint_variable(name: str) -> bool:
    """Variables through which a playbook would choose where its cloud or S3 requests go."""
    return name.endswith(("endpoint_url", "_endpoint", "endpoint"))

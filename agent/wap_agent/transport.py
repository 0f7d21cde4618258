"""HTTPS to the platform (stdlib http.client): the agent's token, the platform's CA pinned.

With ``ca_file`` the platform is verified against that CA alone, never the system's CAs (an
``ssl`` context made from the file). Plain HTTP is used only when the URL says ``http``, and the
agent then warns that its token and samples travel unencrypted. One connection is kept open
between requests and opened again after any error.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from wap_agent import __version__

log = logging.getLogger(__name__)

INGEST_PATH = "/api/v1/agent/samples"
COMMANDS_PATH = "/api/v1/agent/commands"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    retry_after: float | None = None

    @property
    def reason(self) -> str:
        return str(self.body.get("message") or self.body or f"HTTP {self.status}")


class Unreachable(Exception):
    """The platform could not be asked (refused, timed out, TLS failed); the message says why."""


class Backoff:
    """Waits between failed tries: doubling from ``low`` to ``high``, at least a Retry-After,
    with jitter (agents that lost the platform together do not return together). The first
    failure and the recovery are logged once each, not every try."""

    def __init__(self, low: float, high: float, stop: threading.Event, what: str) -> None:
        self.low, self.high, self.stop, self.what = low, high, stop, what
        self.delay = low
        self.failing_since: float | None = None

    def failed(self, reason: str, at_least: float | None = None) -> None:
        """Log (the first time), then wait before the next try (or until stopped)."""
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("%s: %s; trying again with back-off", self.what, reason)
        else:
            log.debug("%s: %s", self.what, reason)
        wait = max(self.delay, at_least or 0.0)
        self.delay = min(self.high, self.delay * 2)
        self.stop.wait(wait * random.uniform(0.8, 1.0))

    def succeeded(self) -> None:
        self.delay = self.low
        if self.failing_since is not None:
            log.warning(
                "%s: platform reachable again after %.0f s",
                self.what, time.monotonic() - self.failing_since,
            )  # fmt: skip
            self.failing_since = None


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification against ``ca_file`` alone when given (the pinned CA), else the system's."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    return ssl.create_default_context()


class Platform:
    def __init__(
        self,
        url: str,
        token_file: Path,
        ca_file: Path | None = None,
        timeout: float = 30.0,
        warn: bool = True,
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.token_file = Path(token_file)
        self.timeout = timeout
        self._context = ssl_context(ca_file) if self.https else None
        self._conn: http.client.HTTPConnection | None = None
        if warn and not self.https:
            log.warning(
                "the platform's URL is %s: the agent's token and samples travel UNENCRYPTED;"
                " use https with the platform's CA (GET /ca.pem) as ca_file",
                url,
            )

    def token(self) -> str:
        """Read at every request, so that a token replaced on disk is used without a restart."""
        try:
            return self.token_file.read_text().strip()
        except OSError as exc:
            raise Unreachable(f"the token file {self.token_file} cannot be read: {exc}") from None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, hostname: str, batches: list[bytes]) -> Answer:
        """POST the batches (each a stored JSON object) in one request; the platform's answer,
        or Unreachable."""
        envelope = json.dumps({"version": __version__, "hostname": hostname}).encode()
        body = b'{"agent":' + envelope + b',"batches":[' + b",".join(batches) + b"]}"
        return self.request("POST", INGEST_PATH, body)

    def poll(self, wait: float) -> Answer:
        """The commands the platform holds for this host, waiting up to ``wait`` seconds for one
        (this connection's timeout must be longer)."""
        return self.request("GET", f"{COMMANDS_PATH}?wait={wait:g}")

    def report(self, command_id: str, kind: str, document: dict) -> Answer:
        """A command's ``progress`` or ``result``."""
        body = json.dumps(document, allow_nan=False).encode()
        return self.request("POST", f"{COMMANDS_PATH}/{quote(command_id, safe='')}/{kind}", body)

    def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        """One request with the token; the platform's answer (its JSON object, and Retry-After),
        or Unreachable."""
        headers = {
            "Authorization": f"Bearer {self.token()}",
            "User-Agent": f"wap-agent/{__version__}",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Unreachable(f"{self.url}: {type(exc).__name__}: {exc}") from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"message": raw[:200].decode(errors="replace")}
        retry_after = response.getheader("Retry-After")
        try:
            wait = float(retry_after) if retry_after else None
        except ValueError:
            wait = None
        return Answer(response.status, answer if isinstance(answer, dict) else {}, wait)

"""HTTPS as webui/README.md says: `wap up` with WAP_TLS=auto (a CA of its own, printed with its
fingerprint, verified by clients), `wap web` with a given certificate and key, plain HTTP on the TLS
port redirected (GET, HEAD) or refused (anything else), Secure cookies, HSTS, the CA download, and
clear refusals of certificate and key files that cannot be served."""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import sys
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.webui.helpers import Api, Proc, env_for, free_port, wait_for
from tests.webui.test_embedded import base, start_up, up_env  # noqa: F401 (base: a fixture)
from tests.webui.test_hardening_serving import EngineIO
from tests.webui.test_jobs import project_with_host, start_job
from webui.config import Settings, SettingsError, load_settings
from webui.tls import TlsError, check_pair, ensure_auto, fingerprint


def answers_https(proc: Proc, url: str, ca: Path) -> bool:
    assert proc.alive(), proc.output()
    try:
        return requests.get(url + "/healthz", verify=str(ca), timeout=2).ok
    except requests.RequestException:
        return False


def https_api(url: str, ca: Path) -> Api:
    """A console client that trusts `ca` alone (a session's `verify` loses to REQUESTS_CA_BUNDLE
    from the environment unless the session ignores it)."""
    api = Api(url)
    api.http.verify = str(ca)
    api.http.trust_env = False
    return api


def sans(pem: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in names.get_values_for_type(x509.DNSName)} | {
        str(v) for v in names.get_values_for_type(x509.IPAddress)
    }


def test_wap_up_with_its_own_ca(tmp_path: Path, base: Path) -> None:  # noqa: F811
    port = free_port()
    env = {**up_env(base, port), "WAP_TLS": "auto", "WAP_TLS_NAMES": "wap.example.test,10.9.8.7"}
    up = start_up(tmp_path, env, "up")
    try:
        wait_for(lambda: "WAP is up" in up.output() or not up.alive(), timeout=60, what="wap up")
        printed = up.output()
        url = f"https://127.0.0.1:{port}"
        assert f"WAP is up: {url}/" in printed, printed
        ca_path = Path(re.search(r"certificates from the CA in (\S+)", printed).group(1))
        shown = re.search(r"SHA-256 fingerprint: ([0-9A-F:]{95})", printed).group(1)
        der = x509.load_pem_x509_certificate(ca_path.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        assert shown.replace(":", "").lower() == hashlib.sha256(der).hexdigest()
        assert ca_path == base / "data" / "tls" / "ca.pem"
        assert (ca_path.parent / "ca.key").stat().st_mode & 0o777 == 0o600
        covered = sans(ca_path.parent / "server.pem")
        assert {"127.0.0.1", "localhost", socket.gethostname(), "wap.example.test"} <= covered
        assert "10.9.8.7" in covered

        # The console verifies against the printed CA, by address and by name; not without it.
        assert requests.get(url + "/healthz", verify=str(ca_path), timeout=10).ok
        assert requests.get(f"https://localhost:{port}/healthz", verify=str(ca_path)).ok
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/healthz", timeout=10)
        ca_download = requests.get(url + "/ca.pem", verify=str(ca_path), timeout=10)
        assert ca_download.status_code == 200 and ca_download.content == ca_path.read_bytes()

        admin = https_api(url, ca_path)
        assert f"{url}/setup?token=" in printed
        assert admin.setup().ok, (base / "data" / "logs" / "web.log").read_text()[-3000:]
        login = https_api(url, ca_path)
        answer = login.login("admin")
        assert answer.ok and answer.url == url + "/"
        set_cookie = answer.history[0].headers["Set-Cookie"]
        assert "wap_session=" in set_cookie and "Secure" in set_cookie, set_cookie
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"

        # Plain HTTP on the same port: reads are sent to https, writes are refused, not done.
        plain = f"http://127.0.0.1:{port}"
        moved = requests.get(plain + "/jobs?page=2", allow_redirects=False, timeout=10)
        assert moved.status_code == 301
        assert moved.headers["Location"] == url + "/jobs?page=2"
        followed = requests.get(plain + "/healthz", verify=str(ca_path), timeout=10)
        assert followed.ok and followed.url == url + "/healthz"
        write = requests.post(plain + "/login", data={"username": "admin"}, timeout=10)
        assert write.status_code == 400 and "HTTPS only" in write.text
        assert f"{url}/login" in write.text

        # Socket.IO over TLS (a WebSocket in wss://): follow a job that the worker runs.
        login.use_token()
        project_id, host_ids = project_with_host(login)
        job_id = start_job(login, project_id, host_ids, extra_vars={"steps": 3})
        wait_for(
            lambda: login.call("GET", f"/jobs/{job_id}").json()["status"] == "successful",
            timeout=60, what="the job under wap up with TLS",
        )  # fmt: skip
        cookie = "; ".join(f"{c.name}={c.value}" for c in login.http.cookies)
        context = ssl.create_default_context(cafile=str(ca_path))
        stream = EngineIO(url, cookie, ssl_context=context)
        try:
            answer = stream.follow(job_id)
            assert answer["ok"] and answer["job"]["status"] == "successful", answer
            assert answer["events"] and answer["events"][0]["counter"] == 1
        finally:
            stream.close()
    finally:
        up.stop(timeout=40)


def test_the_ca_is_kept_and_the_server_certificate_follows_the_names(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    ensure_auto(directory, ["127.0.0.1", "localhost"])
    ca, server = (directory / "ca.pem").read_bytes(), (directory / "server.pem").read_bytes()
    ensure_auto(directory, ["127.0.0.1", "localhost"])
    assert (directory / "ca.pem").read_bytes() == ca
    assert (directory / "server.pem").read_bytes() == server  # reused as it is
    ensure_auto(directory, ["127.0.0.1", "localhost", "db.example.test"])
    assert (directory / "ca.pem").read_bytes() == ca  # agents that pinned it still trust it
    assert "db.example.test" in sans(directory / "server.pem")
    check_pair(directory / "server.pem", directory / "server.key")


def make_pair(directory: Path, name: str = "localhost") -> tuple[Path, Path, Path]:
    """A CA and a server certificate of our own, as an operator would bring them."""
    ensure_auto(directory, ["127.0.0.1", name])
    return directory / "server.pem", directory / "server.key", directory / "ca.pem"


def test_wap_web_with_a_given_certificate(settings: Settings, tmp_path: Path) -> None:
    cert, key, ca = make_pair(tmp_path / "mine")
    env = {
        **env_for(settings),
        "WAP_TLS_CERT": str(cert),
        "WAP_TLS_KEY": str(key),
        "WAP_TLS_CA": str(ca),
    }
    url = f"https://{settings.bind}"
    web = Proc([sys.executable, "-m", "wap.cli", "web"], tmp_path / "web.log", env)
    try:
        wait_for(lambda: answers_https(web, url, ca), timeout=30, what="wap web over https")
        assert f"WAP web server on {url}/" in web.output()
        assert fingerprint(ca) in web.output()
        page = requests.get(url + "/setup", verify=str(ca), timeout=10)
        assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert requests.get(url + "/ca.pem", verify=str(ca), timeout=10).content == ca.read_bytes()
        assert not (settings.data_dir / "tls").exists()  # nothing generated
    finally:
        web.stop()


def test_without_tls_http_is_served_and_there_is_no_ca(settings: Settings) -> None:
    from webui import create_app

    assert not settings.tls and not settings.secure_cookies
    app = create_app({"WAP_SETTINGS": settings, "TESTING": True})
    try:
        answer = app.test_client().get("/ca.pem")
        assert answer.status_code == 404
        assert "Strict-Transport-Security" not in answer.headers
    finally:
        app.extensions["wap.store"].close()


def test_files_that_cannot_be_served_are_refused_saying_why(tmp_path: Path) -> None:
    cert, key, _ = make_pair(tmp_path / "one")
    other_cert, other_key, _ = make_pair(tmp_path / "two")
    with pytest.raises(TlsError, match=r"WAP_TLS_KEY .*missing\.key does not exist"):
        check_pair(cert, tmp_path / "missing.key")
    with pytest.raises(TlsError, match=r"WAP_TLS_CERT .* does not exist"):
        check_pair(tmp_path / "missing.pem", key)
    with pytest.raises(TlsError, match=r"WAP_TLS_KEY .* is a directory"):
        check_pair(cert, tmp_path)
    (tmp_path / "junk.key").write_text("not a key\n")
    with pytest.raises(TlsError, match=r"holds no PEM private key"):
        check_pair(cert, tmp_path / "junk.key")
    with pytest.raises(TlsError, match=r"holds no PEM certificate"):
        check_pair(key, key)
    with pytest.raises(TlsError, match=r"is not the key of the certificate WAP_TLS_CERT"):
        check_pair(cert, other_key)
    locked = serialization.load_pem_private_key(key.read_bytes(), None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    (tmp_path / "locked.key").write_bytes(locked)
    with pytest.raises(TlsError, match=r"is encrypted"):
        check_pair(cert, tmp_path / "locked.key")
    check_pair(other_cert, other_key)


def test_the_commands_refuse_a_mismatched_key_before_starting(
    settings: Settings, tmp_path: Path
) -> None:
    cert, _, _ = make_pair(tmp_path / "one")
    _, other_key, _ = make_pair(tmp_path / "two")
    env = {**env_for(settings), "WAP_TLS_CERT": str(cert), "WAP_TLS_KEY": str(other_key)}
    for command in ("web", "up"):
        run = Proc([sys.executable, "-m", "wap.cli", command], tmp_path / f"{command}.log", env)
        assert run.popen.wait(60) == 2, run.output()
        assert f"wap {command}: WAP_TLS_KEY {other_key} is not the key of" in run.output()
        assert "Traceback" not in run.output()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WAP_TLS": "yes"}, "is not 'auto' or 'off'"),
        ({"WAP_TLS_CERT": "/x.pem"}, "WAP_TLS_KEY is not set"),
        ({"WAP_TLS_KEY": "/x.key"}, "WAP_TLS_CERT is not set"),
        ({"WAP_TLS": "auto", "WAP_TLS_CERT": "/x", "WAP_TLS_KEY": "/y"}, "unset WAP_TLS"),
    ],
)
def test_tls_settings_that_contradict_are_refused(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"WAP_DATA_DIR": str(tmp_path), **env})


def test_tls_settings(tmp_path: Path) -> None:
    plain = load_settings({"WAP_DATA_DIR": str(tmp_path)})
    assert not plain.tls and plain.url == "http://127.0.0.1:8080"
    auto = load_settings({"WAP_DATA_DIR": str(tmp_path), "WAP_TLS": "auto"})
    assert auto.tls and auto.secure_cookies and auto.url == "https://127.0.0.1:8080"
    assert auto.tls_ca == tmp_path.resolve() / "tls" / "ca.pem"
    assert not (tmp_path / "tls").exists()  # made where a server starts, not by every process

"""Settings from the environment."""

from pathlib import Path

import pytest

from webui.config import SettingsError, load_settings, parse_bind, require_services


def test_defaults_and_kept_keys(tmp_path: Path) -> None:
    env = {"WAP_DATA_DIR": str(tmp_path / "d")}
    first = load_settings(env)
    assert (first.host, first.port) == ("127.0.0.1", 8080)
    assert (tmp_path / "d" / "secret_key").stat().st_mode & 0o777 == 0o600
    again = load_settings(env)
    assert again.secret_key == first.secret_key
    assert again.credential_key == first.credential_key
    given = load_settings({**env, "WAP_SECRET_KEY": "x" * 40})
    assert given.secret_key == "x" * 40


@pytest.mark.parametrize("bind", ["8080", "host:", ":80", "h:99999", "h:port"])
def test_bad_bind_says_what_is_expected(bind: str) -> None:
    with pytest.raises(SettingsError, match="host:port"):
        parse_bind(bind)


def test_bad_numbers_and_missing_services(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="WAP_LOST_AFTER"):
        load_settings({"WAP_DATA_DIR": str(tmp_path), "WAP_LOST_AFTER": "soon"})
    with pytest.raises(SettingsError, match="wap up"):
        require_services(load_settings({"WAP_DATA_DIR": str(tmp_path)}))

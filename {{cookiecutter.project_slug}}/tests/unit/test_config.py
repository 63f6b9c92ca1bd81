import pytest

from {{ cookiecutter.package_name }} import config


def test_defaults(monkeypatch):
    for name in ("REDIS_URL", "LOCK_WAIT_SECONDS", "LOCK_TTL_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = config.load()
    assert settings.redis_url == ""
    # A short lease, so a dead holder's lock comes back within seconds; `hold`'s
    # watchdog keeps a longer hold (hold_ms up to 5000) alive.
    assert 1 <= settings.lock_ttl <= 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOCK_WAIT_SECONDS", "soon"),
        ("LOCK_TTL_SECONDS", "0.5"),
        ("LOCK_TTL_SECONDS", "nan"),
        ("EXPORT_DELIVERY", "carrier-pigeon"),
    ],
)
def test_bad_settings_name_themselves(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=name):
        config.load()

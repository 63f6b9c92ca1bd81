import pytest

from {{ cookiecutter.package_name }} import config


def test_defaults(monkeypatch):
    for name in ("REDIS_URL", "LOCK_WAIT_SECONDS", "LOCK_TTL_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = config.load()
    assert settings.redis_url == ""
    assert settings.lock_ttl > 5  # longer than the longest hold_ms


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOCK_WAIT_SECONDS", "soon"),
        ("LOCK_TTL_SECONDS", "1"),
        ("LOCK_TTL_SECONDS", "nan"),
        ("EXPORT_DELIVERY", "carrier-pigeon"),
    ],
)
def test_bad_settings_name_themselves(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=name):
        config.load()

import pytest

from {{ cookiecutter.package_name }} import config


def test_defaults(monkeypatch):
    for name in ("REDIS_URL", "LOCK_WAIT_SECONDS", "EXPORT_ACCEL_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    settings = config.load()
    assert settings.export_accel_prefix == "/_internal/exports/"
    assert settings.lock_ttl > 5  # longer than the longest hold_ms
    assert settings.export_work == settings.export_dir / "work"


@pytest.mark.parametrize(
    ("name", "value"),
    [("LOCK_WAIT_SECONDS", "soon"), ("LOCK_TTL_SECONDS", "1"), ("EXPORT_ACCEL_PREFIX", "/x")],
)
def test_bad_settings_name_themselves(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=name):
        config.load()

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


def test_a_test_passes_its_own_variables_and_the_environment_is_not_read(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://from-the-environment")
    monkeypatch.setenv("LOCK_WAIT_SECONDS", "soon")
    settings = config.load({"LONG_WORK_CAP": "3"})
    assert settings.redis_url == "" and settings.long_work_cap == 3
    with pytest.raises(config.ConfigError, match="LONG_WORK_CAP"):
        config.load({"LONG_WORK_CAP": "three"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOCK_WAIT_SECONDS", "soon"),
        ("LOCK_TTL_SECONDS", "0.5"),
        ("LOCK_TTL_SECONDS", "nan"),
        ("EXPORT_DELIVERY", "carrier-pigeon"),
        ("REDIS_MAX_CONNECTIONS", "0"),
        # A lock's records must outlive its lease (LOCK_TTL_SECONDS, 5 by default).
        ("LOCK_RECORD_TTL_SECONDS", "5"),
    ],
)
def test_bad_settings_name_themselves(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=name):
        config.load()


@pytest.mark.parametrize(
    ("concurrency", "cap", "connections"),
    [
        # sync, gthread's 4 threads: one connection per request served at once.
        ("1", "", 1),
        ("4", "", 4),
        # gevent's 1,000 connections, aiohttp's no bound (0), or none known: the cap.
        ("1000", "", 100),
        ("0", "", 100),
        ("", "", 100),
        ("1000", "250", 250),
        ("4", "2", 2),
    ],
)
def test_the_redis_pool_follows_the_workers_concurrency(monkeypatch, concurrency, cap, connections):
    monkeypatch.setenv("APP_WORKER_CONCURRENCY", concurrency)
    monkeypatch.setenv("REDIS_MAX_CONNECTIONS", cap)
    assert config.load().redis_connections == connections

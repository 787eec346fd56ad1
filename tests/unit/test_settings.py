"""Settings: embedded defaults when nothing is set; each URL switches its part to the real service."""

from __future__ import annotations

from pathlib import Path

import pytest
from taskiq import InMemoryBroker
from taskiq_redis import RedisStreamBroker

from naboom.app import create_app
from naboom.background.broker import create_broker
from naboom.db.config import database_config
from naboom.settings import Settings


def test_unset_variables_mean_the_embedded_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"NABOOM_VAR_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'naboom.sqlite3'}"
    assert settings.redis_url is None and settings.embedded_mqtt
    assert (settings.mqtt_target.host, settings.mqtt_target.port) == ("127.0.0.1", 1884)
    assert settings.embedded_mqtt_ws_port == 8084 and settings.http_port == 8000
    assert isinstance(create_broker(settings), InMemoryBroker)
    assert settings.ingest_topic == "panic/ingest/+"
    # a generated key is kept so restarts keep tokens and encrypted secrets readable
    assert Settings.from_env({"NABOOM_VAR_DIR": str(tmp_path)}).secret_key == settings.secret_key


def test_urls_switch_each_part_to_the_real_service(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "NABOOM_VAR_DIR": str(tmp_path),
            "NABOOM_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1/naboom",
            "NABOOM_REDIS_URL": "redis://127.0.0.1:6379/0",
            "NABOOM_MQTT_URL": "mqtt://ingest:pw@broker.internal:1883",
            "NABOOM_SECRET_KEY": "k" * 40,
            "NABOOM_MQTT_SHARE_GROUP": "naboom",
        }
    )
    assert not settings.embedded_database and not settings.embedded_mqtt
    target = settings.mqtt_target
    assert (target.host, target.port, target.username, target.password) == ("broker.internal", 1883, "ingest", "pw")
    assert "pw" not in repr(target) and "k" * 40 not in repr(settings)
    assert isinstance(create_broker(settings), RedisStreamBroker)
    assert settings.ingest_topic == "$share/naboom/panic/ingest/+"
    assert database_config(settings).get_engine().dialect.name == "postgresql"
    app = create_app(settings, run_ingest=False)
    assert type(app.plugins.get("ChannelsPlugin")._backend).__name__ == "RedisChannelsStreamBackend"


def test_a_shared_database_requires_an_explicit_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NABOOM_SECRET_KEY"):
        Settings.from_env({"NABOOM_VAR_DIR": str(tmp_path), "NABOOM_DATABASE_URL": "postgresql+asyncpg://x/y"})


def test_every_setting_is_documented_in_the_readme_and_the_env_example() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    names = set(re.findall(r'"(NABOOM_[A-Z0-9_]+)"', (root / "backend/naboom/settings.py").read_text()))
    readme = (root / "README.md").read_text()
    example = (root / ".env.example").read_text()
    assert names, "no NABOOM_* variable found in settings.py"
    assert not sorted(n for n in names if n not in readme), "undocumented in README.md"
    # Set by compose.yaml or only meaningful on a developer's machine:
    local = {"NABOOM_VAR_DIR", "NABOOM_HTTP_HOST", "NABOOM_HTTP_PORT", "NABOOM_DATABASE_URL", "NABOOM_REDIS_URL",
             "NABOOM_MQTT_URL", "NABOOM_MQTT_CLIENT_ID", "NABOOM_EMBEDDED_MQTT_PORT", "NABOOM_EMBEDDED_MQTT_WS_PORT"}
    assert not sorted(n for n in names - local if n not in example), "missing from .env.example"

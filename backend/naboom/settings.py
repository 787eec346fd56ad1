"""One Settings object, read from ``NABOOM_*`` environment variables once."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

EMBEDDED_MQTT_HOST = "127.0.0.1"
EMBEDDED_MQTT_PORT = 1884
EMBEDDED_MQTT_WS_PORT = 8084
# backend/naboom/settings.py → the checkout's frontend build (absent in an installed package).
DEFAULT_MONITOR_DIR = Path(__file__).resolve().parents[2] / "frontend" / "dist"


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """Where the MQTT broker is and how to log in."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def client(self, identifier: str, *, clean_session: bool, keepalive: int = 30, **options: Any) -> Any:
        """An aiomqtt client for this broker (MQTT 3.1.1; TLS when the URL says so)."""
        import aiomqtt

        return aiomqtt.Client(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=clean_session,
            keepalive=keepalive,
            tls_params=aiomqtt.TLSParameters() if self.tls else None,
            **options,
        )

    @classmethod
    def from_url(cls, url: str) -> MqttTarget:
        """Parse ``mqtt://user:pass@host:port`` (``mqtts://`` for TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts", "tcp"}:
            raise ValueError(f"NABOOM_MQTT_URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=parts.username,
            password=parts.password,
            tls=tls,
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime configuration; unset variables mean the embedded defaults."""

    database_url: str
    redis_url: str | None
    # Every Redis key of this deployment starts with it (several deployments may share a Redis).
    redis_prefix: str
    mqtt_url: str | None
    # The broker's Dynamic Security admin (mqtt://user:pass@host:port); unset = no broker accounts.
    mqtt_admin_url: str | None = field(repr=False)
    http_host: str
    http_port: int
    secret_key: str = field(repr=False)
    allowed_origins: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    trusted_proxies: tuple[str, ...]
    var_dir: Path
    mqtt_client_id: str
    mqtt_share_group: str | None
    mqtt_topic_prefix: str
    mqtt_batch_size: int
    embedded_mqtt_port: int
    embedded_mqtt_ws_port: int
    dedup_window_seconds: int
    future_skew_seconds: int
    key_grace_seconds: int
    token_ttl_seconds: int
    login_max_failures: int
    login_lockout_seconds: int
    sos_attach_window_seconds: int
    vehicle_pings_per_minute: int
    vehicle_ping_burst: int
    stream_history: int
    sse_heartbeat_seconds: float
    rejection_log_max_rows: int
    sms_provider: str
    clickatell_api_key: str | None = field(repr=False)
    log_level: str
    log_format: str
    shutdown_timeout_seconds: float
    startup_timeout_seconds: float
    public_url: str
    clickatell_url: str
    sms_fallback_provider: str | None
    fallback_clickatell_api_key: str | None = field(repr=False)
    fallback_clickatell_url: str
    sms_callback_secret: str | None = field(repr=False)
    sms_timeout_seconds: float
    sms_max_attempts: int
    sms_retry_base_seconds: float
    sms_retry_max_seconds: float
    breaker_failure_threshold: int
    breaker_cooldown_seconds: float
    task_idle_timeout_seconds: float
    worker_concurrency: int
    scheduler_lock_seconds: float
    escalation_check_seconds: int
    # /metrics needs ``Authorization: Bearer <this>`` when set.
    metrics_token: str | None = field(repr=False)
    device_heartbeat_seconds: int
    silent_check_seconds: int
    outbox_sweep_seconds: int
    bridge_enabled: bool
    bridge_poll_seconds: float
    retention_incident_days: int
    retention_event_days: int
    retention_vehicle_ping_days: int
    retention_rejection_days: int
    retention_receipt_days: int
    retention_message_days: int
    location_coarsen_days: int
    location_remove_days: int
    coverage_cell_degrees: float
    # The built control-room monitor served at /monitor/ (frontend/dist of this checkout by default).
    monitor_dir: Path

    @property
    def embedded_database(self) -> bool:
        """True when running on the SQLite default."""
        return self.database_url.startswith("sqlite")

    @property
    def embedded_mqtt(self) -> bool:
        """True when the app starts its own MQTT broker."""
        return self.mqtt_url is None

    @property
    def mqtt_target(self) -> MqttTarget:
        """The broker the ingest connects to."""
        if self.mqtt_url is None:
            return MqttTarget(host=EMBEDDED_MQTT_HOST, port=self.embedded_mqtt_port, username="naboom-ingest")
        return MqttTarget.from_url(self.mqtt_url)

    @property
    def ingest_topic(self) -> str:
        """The subscription filter, shared when a share group is set."""
        topic = f"{self.mqtt_topic_prefix}/+"
        return f"$share/{self.mqtt_share_group}/{topic}" if self.mqtt_share_group else topic

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``NABOOM_*`` variable; the only place that looks at the environment."""
        env = os.environ if env is None else env
        var_dir = Path(env.get("NABOOM_VAR_DIR", "var")).resolve()
        secret_key = env.get("NABOOM_SECRET_KEY")
        if not secret_key:
            if env.get("NABOOM_DATABASE_URL"):
                # Several processes share a real database: they must share the key that signs
                # tokens and encrypts device secrets, so it cannot be made up per machine.
                raise ValueError("NABOOM_SECRET_KEY must be set when NABOOM_DATABASE_URL is")
            secret_key = _dev_secret(var_dir)
        http_port = int(env.get("NABOOM_HTTP_PORT", "8000"))
        default_origins = f"http://127.0.0.1:{http_port},http://localhost:{http_port}"
        return cls(
            database_url=env.get("NABOOM_DATABASE_URL") or f"sqlite+aiosqlite:///{var_dir / 'naboom.sqlite3'}",
            redis_url=env.get("NABOOM_REDIS_URL") or None,
            redis_prefix=env.get("NABOOM_REDIS_PREFIX") or "naboom",
            mqtt_url=env.get("NABOOM_MQTT_URL") or None,
            mqtt_admin_url=env.get("NABOOM_MQTT_ADMIN_URL") or None,
            http_host=env.get("NABOOM_HTTP_HOST", "127.0.0.1"),
            http_port=http_port,
            secret_key=secret_key,
            allowed_origins=_split(env.get("NABOOM_ALLOWED_ORIGINS", default_origins)),
            allowed_hosts=_split(env.get("NABOOM_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")),
            # X-Forwarded-For is believed only from these peers (nginx on the same host by default).
            trusted_proxies=_split(env.get("NABOOM_TRUSTED_PROXIES", "127.0.0.1,::1")),
            var_dir=var_dir,
            mqtt_client_id=env.get("NABOOM_MQTT_CLIENT_ID") or f"naboom-ingest-{socket.gethostname()}",
            mqtt_share_group=env.get("NABOOM_MQTT_SHARE_GROUP") or None,
            mqtt_topic_prefix=env.get("NABOOM_MQTT_TOPIC_PREFIX", "panic/ingest"),
            mqtt_batch_size=int(env.get("NABOOM_MQTT_BATCH_SIZE", "2000")),
            embedded_mqtt_port=int(env.get("NABOOM_EMBEDDED_MQTT_PORT", str(EMBEDDED_MQTT_PORT))),
            embedded_mqtt_ws_port=int(env.get("NABOOM_EMBEDDED_MQTT_WS_PORT", str(EMBEDDED_MQTT_WS_PORT))),
            dedup_window_seconds=int(env.get("NABOOM_DEDUP_WINDOW_SECONDS", str(7 * 24 * 3600))),
            future_skew_seconds=int(env.get("NABOOM_FUTURE_SKEW_SECONDS", "300")),
            key_grace_seconds=int(env.get("NABOOM_KEY_GRACE_SECONDS", str(7 * 24 * 3600))),
            token_ttl_seconds=int(env.get("NABOOM_TOKEN_TTL_SECONDS", str(12 * 3600))),
            login_max_failures=int(env.get("NABOOM_LOGIN_MAX_FAILURES", "5")),
            login_lockout_seconds=int(env.get("NABOOM_LOGIN_LOCKOUT_SECONDS", "900")),
            sos_attach_window_seconds=int(env.get("NABOOM_SOS_ATTACH_WINDOW_SECONDS", "1800")),
            vehicle_pings_per_minute=int(env.get("NABOOM_VEHICLE_PINGS_PER_MINUTE", "30")),
            vehicle_ping_burst=int(env.get("NABOOM_VEHICLE_PING_BURST", "10")),
            stream_history=int(env.get("NABOOM_STREAM_HISTORY", "500")),
            sse_heartbeat_seconds=float(env.get("NABOOM_SSE_HEARTBEAT_SECONDS", "15")),
            rejection_log_max_rows=int(env.get("NABOOM_REJECTION_LOG_MAX_ROWS", "10000")),
            sms_provider=env.get("NABOOM_SMS_PROVIDER", "console"),
            clickatell_api_key=env.get("NABOOM_CLICKATELL_API_KEY") or None,
            log_level=env.get("NABOOM_LOG_LEVEL", "INFO"),
            log_format=env.get("NABOOM_LOG_FORMAT", "text"),
            shutdown_timeout_seconds=float(env.get("NABOOM_SHUTDOWN_TIMEOUT_SECONDS", "10")),
            startup_timeout_seconds=float(env.get("NABOOM_STARTUP_TIMEOUT_SECONDS", "120")),
            # Links in SMS point here (the monitor's address as responders reach it).
            public_url=(env.get("NABOOM_PUBLIC_URL") or f"http://localhost:{http_port}").rstrip("/"),
            clickatell_url=env.get("NABOOM_CLICKATELL_URL", "https://platform.clickatell.com").rstrip("/"),
            sms_fallback_provider=env.get("NABOOM_SMS_FALLBACK_PROVIDER") or None,
            fallback_clickatell_api_key=env.get("NABOOM_FALLBACK_CLICKATELL_API_KEY") or None,
            fallback_clickatell_url=env.get(
                "NABOOM_FALLBACK_CLICKATELL_URL", "https://platform.clickatell.com"
            ).rstrip("/"),
            sms_callback_secret=env.get("NABOOM_SMS_CALLBACK_SECRET") or None,
            sms_timeout_seconds=float(env.get("NABOOM_SMS_TIMEOUT_SECONDS", "10")),
            sms_max_attempts=int(env.get("NABOOM_SMS_MAX_ATTEMPTS", "5")),
            sms_retry_base_seconds=float(env.get("NABOOM_SMS_RETRY_BASE_SECONDS", "5")),
            sms_retry_max_seconds=float(env.get("NABOOM_SMS_RETRY_MAX_SECONDS", "25")),
            breaker_failure_threshold=int(env.get("NABOOM_SMS_BREAKER_THRESHOLD", "3")),
            breaker_cooldown_seconds=float(env.get("NABOOM_SMS_BREAKER_COOLDOWN_SECONDS", "60")),
            task_idle_timeout_seconds=float(env.get("NABOOM_TASK_IDLE_TIMEOUT_SECONDS", "60")),
            worker_concurrency=int(env.get("NABOOM_WORKER_CONCURRENCY", "50")),
            scheduler_lock_seconds=float(env.get("NABOOM_SCHEDULER_LOCK_SECONDS", "15")),
            escalation_check_seconds=int(env.get("NABOOM_ESCALATION_CHECK_SECONDS", "60")),
            metrics_token=env.get("NABOOM_METRICS_TOKEN") or None,
            device_heartbeat_seconds=int(env.get("NABOOM_DEVICE_HEARTBEAT_SECONDS", "3600")),
            silent_check_seconds=int(env.get("NABOOM_SILENT_CHECK_SECONDS", "300")),
            outbox_sweep_seconds=int(env.get("NABOOM_OUTBOX_SWEEP_SECONDS", "60")),
            bridge_enabled=env.get("NABOOM_BRIDGE_ENABLED", "true").strip().lower() not in {"0", "false", "no", "off"},
            bridge_poll_seconds=float(env.get("NABOOM_BRIDGE_POLL_SECONDS", "3")),
            retention_incident_days=int(env.get("NABOOM_RETENTION_INCIDENT_DAYS", "1095")),
            retention_event_days=int(env.get("NABOOM_RETENTION_EVENT_DAYS", "1095")),
            retention_vehicle_ping_days=int(env.get("NABOOM_RETENTION_VEHICLE_PING_DAYS", "90")),
            retention_rejection_days=int(env.get("NABOOM_RETENTION_REJECTION_DAYS", "30")),
            retention_receipt_days=int(env.get("NABOOM_RETENTION_RECEIPT_DAYS", "30")),
            retention_message_days=int(env.get("NABOOM_RETENTION_MESSAGE_DAYS", "365")),
            location_coarsen_days=int(env.get("NABOOM_LOCATION_COARSEN_DAYS", "90")),
            location_remove_days=int(env.get("NABOOM_LOCATION_REMOVE_DAYS", "730")),
            coverage_cell_degrees=float(env.get("NABOOM_COVERAGE_CELL_DEGREES", "0.01")),
            monitor_dir=Path(env.get("NABOOM_MONITOR_DIR") or DEFAULT_MONITOR_DIR).resolve(),
        )


def _dev_secret(var_dir: Path) -> str:
    """A per-installation random key kept under ``var/`` when none is configured."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


@cache
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return Settings.from_env()

"""The one settings object: environment variables prefixed ``CRMSYNC_`` (and ``.env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """crmsync's settings. With none set, it runs on the embedded default: a SQLite file in
    the working directory and no Redis."""

    model_config = SettingsConfigDict(env_prefix="CRMSYNC_", env_file=".env", extra="ignore")

    #: the store; ``postgresql+psycopg://...`` selects PostgreSQL
    database_url: str = f"sqlite:///{Path.cwd() / 'crmsync.db'}"
    #: Celery's broker (Redis); empty runs tasks without one (embedded default)
    broker_url: str = ""
    #: Redis for locks and the shared rate budget; defaults to the broker when that is Redis
    redis_url: str = ""
    #: prefix of every Redis key crmsync writes (queues, locks, rate budgets), so that
    #: deployments (or test sessions) can share one Redis
    redis_key_prefix: str = "crmsync"
    #: key that encrypts stored CRM credentials (a Fernet key: ``crmsync secret-key``)
    secret_key: SecretStr | None = None
    #: the public base URL CRMs call webhooks on (behind a proxy: what the CRM sees)
    public_base_url: str = "http://127.0.0.1:8000"
    #: largest webhook body accepted, in bytes
    webhook_max_bytes: int = 1_000_000
    #: Celery soft and hard time limits per task, in seconds
    task_soft_time_limit: int = 3600
    task_time_limit: int = 3900
    #: how often beat's dispatcher looks for due connections, in seconds
    dispatch_interval_seconds: float = 15.0
    #: seconds a connection's sync lock lives without renewal
    lock_ttl_seconds: int = 60
    #: echo SQL (debugging)
    sql_echo: bool = False
    #: log lines as JSON objects (``json``, for production), readable lines (``console``),
    #: or ``auto``: readable when stderr is a terminal, else JSON
    log_format: Literal["auto", "json", "console"] = "auto"
    #: the level of crmsync's logs (DEBUG, INFO, WARNING, ERROR); the services log at INFO
    #: unless this is set, other commands only warnings
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    #: the port ``crmsync worker`` serves Prometheus metrics on (0: none)
    worker_metrics_port: int = 9101
    #: a connection's runs failing this many times in a row send an alert
    alert_failed_runs: int = 3
    #: newly opened conflicts are sent as a digest at most once per this many seconds
    alert_digest_seconds: float = 900.0

    @field_validator("database_url")
    @classmethod
    def _sqlite_or_postgresql(cls, value: str) -> str:
        # the store's two back-ends; anything else failed later with a driver's ImportError
        scheme = value.partition("://")[0] if "://" in value else ""
        if scheme.partition("+")[0] not in ("sqlite", "postgresql"):
            shown = f"{scheme}://" if scheme else "a value with no scheme"
            raise ValueError(
                "must be a SQLite URL (sqlite:///PATH) or a PostgreSQL one "
                f"(postgresql+psycopg://USER@HOST/DB), not {shown}"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def effective_redis_url(self) -> str:
        """The Redis for locks and rate budgets: ``redis_url``, else a Redis broker, else ""."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return ""


def get_settings() -> Settings:
    """The settings as the environment (and ``.env``) give them now. Cheap: the faces read
    them once per command or request."""
    return Settings()

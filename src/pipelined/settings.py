"""Every setting, validated once at start-up. Nothing else reads the environment."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from PIL import features
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelined.errors import ConfigError
from pipelined.quotas import SQS_MAX_VISIBILITY_TIMEOUT_S, SQS_MAX_WAIT_TIME_S

ENV_PREFIX = "PIPELINED_"


class Settings(BaseSettings):
    """Configuration from ``PIPELINED_*`` variables and an optional ``.env`` file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # Where the work comes from and where results go.
    queue_url: str = Field(min_length=1)
    output_bucket: str = Field(min_length=3)
    output_prefix: str = "pipelined/"
    table: str = Field(min_length=3)
    topic_arn: str = Field(min_length=1)

    # Concurrency.
    max_inflight: int = Field(default=8, ge=1, le=1000)
    pollers: int = Field(default=2, ge=1, le=50)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    worker_max_tasks: int = Field(default=200, ge=1)
    worker_memory_mb: int = Field(default=1024, ge=64)

    # Leases and timing.
    visibility_timeout_s: int = Field(default=60, ge=2, le=SQS_MAX_VISIBILITY_TIMEOUT_S)
    wait_time_s: int = Field(default=SQS_MAX_WAIT_TIME_S, ge=0, le=SQS_MAX_WAIT_TIME_S)
    max_job_time_s: int = Field(default=900, ge=1, le=SQS_MAX_VISIBILITY_TIMEOUT_S)
    job_timeout_s: float = Field(default=300.0, gt=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    claim_lease_s: int = Field(default=120, ge=2)
    retry_base_delay_s: float = Field(default=5.0, ge=0)
    retry_max_delay_s: float = Field(default=900.0, ge=1, le=SQS_MAX_VISIBILITY_TIMEOUT_S)
    delete_flush_s: float = Field(default=0.1, ge=0, le=10)

    # Processing.
    thumbnail_sizes: Annotated[tuple[int, ...], NoDecode] = (256, 1024)
    thumbnail_format: Literal["webp", "jpeg", "avif"] = "webp"
    max_object_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=100_000_000, ge=1)
    max_frames: int = Field(default=1000, ge=1)
    max_pages: int = Field(default=2000, ge=1)
    presign_ttl_s: int = Field(default=0, ge=0, le=7 * 24 * 3600)
    tmp_dir: str | None = None

    # botocore reads only AWS_DEFAULT_REGION; accept the AWS_REGION other SDKs and ECS/Lambda set.
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )

    # Operations.
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a container's probe and scraper come from outside
    metrics_port: int = Field(default=9400, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("thumbnail_sizes", mode="before")
    @classmethod
    def _split_sizes(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("thumbnail_sizes")
    @classmethod
    def _check_sizes(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if not sizes or any(size < 1 or size > 10_000 for size in sizes):
            raise ValueError("must be a comma-separated list of sizes between 1 and 10000")
        return tuple(sorted(set(sizes)))

    @field_validator("thumbnail_format")
    @classmethod
    def _check_format_is_available(cls, fmt: str) -> str:
        if fmt == "avif" and not features.check("avif"):
            raise ValueError("avif needs a Pillow built with libavif, and this one is not")
        return fmt

    @field_validator("output_prefix")
    @classmethod
    def _normalise_prefix(cls, prefix: str) -> str:
        prefix = prefix.strip("/")
        return f"{prefix}/" if prefix else ""

    @model_validator(mode="after")
    def _check_relations(self) -> Settings:
        if self.max_job_time_s < self.job_timeout_s:
            raise ValueError(
                f"{ENV_PREFIX}MAX_JOB_TIME_S ({self.max_job_time_s}) must be at least "
                f"{ENV_PREFIX}JOB_TIMEOUT_S ({self.job_timeout_s})"
            )
        if self.claim_lease_s < 2 * self.lease_renew_interval_s:
            raise ValueError(f"{ENV_PREFIX}CLAIM_LEASE_S ({self.claim_lease_s}) is too short")
        return self

    @property
    def lease_renew_interval_s(self) -> float:
        """Leases are renewed when a third of them is left, so one failed call is survivable."""
        return max(1.0, self.visibility_timeout_s / 3)


def load_settings(**overrides: object) -> Settings:
    """Build Settings or raise ConfigError with a one-line message that names the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        field = ".".join(str(part) for part in detail["loc"])
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "missing":
            message = "is required but not set"
        problems.append(f"{name} {message}" if field else message)
    return "invalid settings: " + "; ".join(problems)

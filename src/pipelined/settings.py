"""Every setting, validated once at start-up. Nothing else reads the environment."""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from typing import Annotated, Literal

from PIL import features
from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelined.disposition import DEFAULT_RETRIES_IN_PLACE
from pipelined.errors import ConfigError
from pipelined.processing.options import DEFAULT_AVIF_SPEED, DEFAULT_WEBP_METHOD
from pipelined.quotas import (
    PUBSUB_MAX_ACK_DEADLINE_S,
    SQS_MAX_VISIBILITY_TIMEOUT_S,
    SQS_MAX_WAIT_TIME_S,
)
from pipelined.rules import RulesFile, load_rules

ENV_PREFIX = "PIPELINED_"
Backend = Literal["aws", "gcp"]

BACKEND_SETTINGS: dict[Backend, tuple[str, ...]] = {
    "aws": ("queue_url", "table", "topic_arn"),
    "gcp": ("subscription", "topic", "collection", "database"),
}
"""The settings that name one backend's resources: required there (unless they have a default),
refused with the other, where they would be silently ignored."""

_GOOGLE_RESOURCE = re.compile(r"projects/(?P<project>[^/]+)/(?P<kind>[a-z]+)/[^/]+")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
"""A bucket name either cloud accepts: S3's rules and Cloud Storage's, taken together."""


@dataclass(frozen=True)
class AwsResources:
    queue_url: str
    table: str
    topic_arn: str


@dataclass(frozen=True)
class GcpResources:
    project: str
    subscription: str
    topic: str
    collection: str
    database: str


class Settings(BaseSettings):
    """Configuration from ``PIPELINED_*`` variables and an optional ``.env`` file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        frozen=True,
        # "inf" passes every ge/le bound and then breaks what converts it to an int (an infinite
        # drain crashed the shutdown in sd_notify); no duration here means "forever".
        allow_inf_nan=False,
    )

    # Which cloud: each has its own settings for the queue, the ledger and the topic.
    backend: Backend = "aws"

    # Where the work comes from and where results go.
    output_bucket: str = Field(min_length=3)
    output_prefix: str = "pipelined/"
    # The buckets events may come from; empty: any. An event from another bucket is rejected
    # (defence in depth beside IAM), and ``pipelined check`` reads each of them.
    input_buckets: Annotated[tuple[str, ...], NoDecode] = ()
    # AWS: an SQS queue, a DynamoDB table, an SNS topic.
    queue_url: str | None = Field(default=None, min_length=1)
    table: str | None = Field(default=None, min_length=3)
    topic_arn: str | None = Field(default=None, min_length=1)
    # Google Cloud: a Pub/Sub subscription and topic, a Firestore collection.
    subscription: str | None = None
    topic: str | None = None
    collection: str = Field(default="pipelined-jobs", pattern=r"^[^/]+$", min_length=1)
    database: str = Field(default="(default)", min_length=1)
    # Google's own variable; without it, the project the subscription is in.
    google_cloud_project: str | None = Field(
        default=None, min_length=1, validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT")
    )

    # Concurrency.
    max_inflight: int = Field(default=8, ge=1, le=1000)
    pollers: int = Field(default=2, ge=1, le=50)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    worker_max_tasks: int = Field(default=200, ge=1)
    worker_memory_mb: int = Field(default=1024, ge=64)

    # Leases and timing.
    visibility_timeout_s: int = Field(default=60, ge=2, le=SQS_MAX_VISIBILITY_TIMEOUT_S)
    # 0 turns the long poll into a short one: an idle poller would spin on empty receives.
    wait_time_s: int = Field(default=SQS_MAX_WAIT_TIME_S, ge=1, le=SQS_MAX_WAIT_TIME_S)
    max_job_time_s: int = Field(default=900, ge=1, le=SQS_MAX_VISIBILITY_TIMEOUT_S)
    job_timeout_s: float = Field(default=300.0, gt=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    # A delivery that meets a live claim is put back for the lease's remaining time, as an SQS
    # visibility delay, so the lease has the same 12 h bound.
    claim_lease_s: int = Field(default=120, ge=2, le=SQS_MAX_VISIBILITY_TIMEOUT_S)
    # 0 doubles to 0: every retry would come back after the 1 s floor, with no backoff at all.
    retry_base_delay_s: float = Field(default=5.0, gt=0)
    retry_max_delay_s: float = Field(default=900.0, ge=1, le=SQS_MAX_VISIBILITY_TIMEOUT_S)
    # Short retries (disposition.IN_PLACE_RETRY_MAX_DELAY_S) one delivery waits out, slot and
    # lease kept, before it goes back to the queue; 0: every retry goes back, spending a receive.
    retries_in_place: int = Field(default=DEFAULT_RETRIES_IN_PLACE, ge=0, le=10)
    # A full batch of ten goes at once; fewer wait this long for company. A second's wait costs
    # nothing (the message stays hidden; after a crash its redelivery is a skipped duplicate),
    # and under load it fills batches that a tenth of a second left at one or two deletes.
    delete_flush_s: float = Field(default=1.0, ge=0, le=10)

    # Processing.
    thumbnail_sizes: Annotated[tuple[int, ...], NoDecode] = (256, 1024)
    thumbnail_format: Literal["webp", "jpeg", "avif"] = "webp"
    # Encoder effort, per format (their scales differ): docs/performance.md has the tables.
    webp_method: int = Field(default=DEFAULT_WEBP_METHOD, ge=0, le=6)
    avif_speed: int = Field(default=DEFAULT_AVIF_SPEED, ge=0, le=10)
    # A YAML file of rules: renditions per bucket, prefix, glob and kind (docs/processing.md).
    # Read and validated here, once; unset, every upload gets the default rule (the two above).
    rules_file: Annotated[RulesFile | None, NoDecode] = None
    max_object_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=100_000_000, ge=1)
    max_frames: int = Field(default=1000, ge=1)
    max_pages: int = Field(default=2000, ge=1)
    presign_ttl_s: int = Field(default=0, ge=0, le=7 * 24 * 3600)
    # None: the system temporary directory, which is checked too (hence validate_default).
    tmp_dir: str | None = Field(default=None, validate_default=True)

    # botocore reads only AWS_DEFAULT_REGION; accept the AWS_REGION other SDKs and ECS/Lambda set.
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )

    # Operations.
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a container's probe and scraper come from outside
    metrics_port: int = Field(default=9400, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("subscription", "topic")
    @classmethod
    def _check_google_resource(cls, name: str | None, info: ValidationInfo) -> str | None:
        kind = "subscriptions" if info.field_name == "subscription" else "topics"
        found = _GOOGLE_RESOURCE.fullmatch(name) if name is not None else None
        if name is not None and (found is None or found["kind"] != kind):
            raise ValueError(f"must be a full name, projects/PROJECT/{kind}/NAME, not {name!r}")
        return name

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

    @field_validator("input_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(","))
        return value

    @field_validator("input_buckets")
    @classmethod
    def _check_buckets(cls, buckets: tuple[str, ...]) -> tuple[str, ...]:
        if buckets == ("",):
            raise ValueError("is empty; unset it to accept events from any bucket")
        if "" in buckets:
            raise ValueError("must be a comma-separated list of bucket names, with no empty item")
        invalid = [bucket for bucket in buckets if not _BUCKET_NAME.fullmatch(bucket)]
        if invalid:
            raise ValueError(
                f"has {', '.join(map(repr, invalid))}, not a bucket name (3 to 222 lower-case "
                "letters, digits, '.', '-' or '_', starting and ending with a letter or digit)"
            )
        return tuple(dict.fromkeys(buckets))  # each once, in the order given

    @field_validator("thumbnail_format")
    @classmethod
    def _check_format_is_available(cls, fmt: str) -> str:
        if fmt == "avif" and not features.check("avif"):
            raise ValueError("avif needs a Pillow built with libavif, and this one is not")
        return fmt

    @field_validator("rules_file", mode="before")
    @classmethod
    def _load_rules_file(cls, value: object) -> object:
        if value == "":
            raise ValueError("is empty; unset it to give every upload the default rule")
        # A RulesError (a ValueError) names the file, the rule and the field.
        return load_rules(value) if isinstance(value, str | os.PathLike) else value

    @field_validator("output_prefix")
    @classmethod
    def _normalise_prefix(cls, prefix: str) -> str:
        prefix = prefix.strip("/")
        if not prefix:
            # Every key under the prefix in the output bucket is taken for an artifact and
            # skipped. With none, an output bucket that is also an input would have every upload
            # skipped silently, and which buckets are inputs is known only as events arrive.
            raise ValueError(
                "must not be empty: the prefix is how pipelined tells its own artifacts from "
                "uploads in a shared bucket, and without one every upload there would be "
                "skipped as an artifact"
            )
        return f"{prefix}/"

    @field_validator("tmp_dir")
    @classmethod
    def _check_tmp_dir(cls, tmp_dir: str | None) -> str | None:
        # Every job stages its files here: were it unusable, each would fail into the
        # dead-letter queue while /readyz, which knows nothing of the disk, stays green.
        problem = _staging_dir_problem(tmp_dir)
        if problem is not None:
            raise ValueError(problem)
        return tmp_dir

    @model_validator(mode="after")
    def _check_relations(self) -> Settings:
        checks = (*_BACKEND_CHECKS[self.backend], *_RELATIONS)
        problems = [problem for check in checks if (problem := check(self)) is not None]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def aws(self) -> AwsResources:
        """The AWS resources; only with BACKEND=aws, where validation made sure of them all."""
        assert self.backend == "aws"
        assert self.queue_url
        assert self.table
        assert self.topic_arn
        return AwsResources(self.queue_url, self.table, self.topic_arn)

    def gcp(self) -> GcpResources:
        """The Google Cloud resources; only with BACKEND=gcp, where validation made sure of them."""
        assert self.backend == "gcp"
        assert self.subscription
        assert self.topic
        return GcpResources(
            project=self.google_cloud_project or _project_of(self.subscription),
            subscription=self.subscription,
            topic=self.topic,
            collection=self.collection,
            database=self.database,
        )

    @property
    def lease_renew_interval_s(self) -> float:
        """Leases are renewed when a third of them is left, so one failed call is survivable."""
        return max(1.0, self.visibility_timeout_s / 3)


def _project_of(resource: str) -> str:
    found = _GOOGLE_RESOURCE.fullmatch(resource)
    assert found is not None  # validated
    return found["project"]


def _env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _backend_settings_present(settings: Settings) -> str | None:
    """Every setting the chosen backend needs is there; none of the other backend's is."""
    other: Backend = "gcp" if settings.backend == "aws" else "aws"
    missing = [
        _env_name(field)
        for field in BACKEND_SETTINGS[settings.backend]
        if getattr(settings, field) is None
    ]
    foreign = [
        _env_name(field) for field in BACKEND_SETTINGS[other] if field in settings.model_fields_set
    ]
    problems = []
    if missing:
        problems.append(
            f"{_listed(missing)} required with {ENV_PREFIX}BACKEND={settings.backend} but not set"
        )
    if foreign:
        problems.append(
            f"{_listed(foreign)} for {ENV_PREFIX}BACKEND={other}, but the backend is "
            f"{settings.backend}: unset {'it' if len(foreign) == 1 else 'them'}"
        )
    return "; ".join(problems) or None


def _listed(names: list[str]) -> str:
    return f"{names[0]} is" if len(names) == 1 else f"{', '.join(names)} are"


def _leases_within_ack_deadline_limit(settings: Settings) -> str | None:
    # Each receive and extension sets the deadline to VISIBILITY_TIMEOUT_S, which Pub/Sub caps.
    if settings.visibility_timeout_s <= PUBSUB_MAX_ACK_DEADLINE_S:
        return None
    return (
        f"{ENV_PREFIX}VISIBILITY_TIMEOUT_S ({settings.visibility_timeout_s}) is over Pub/Sub's "
        f"{PUBSUB_MAX_ACK_DEADLINE_S} s limit on an ack deadline"
    )


def _job_fits_in_max_job_time(settings: Settings) -> str | None:
    if settings.max_job_time_s >= settings.job_timeout_s:
        return None
    return (
        f"{ENV_PREFIX}MAX_JOB_TIME_S ({settings.max_job_time_s}) must be at least "
        f"{ENV_PREFIX}JOB_TIMEOUT_S ({settings.job_timeout_s})"
    )


def _leases_end_within_sqs_limit(settings: Settings) -> str | None:
    """The lease keeper extends a lease, by VISIBILITY_TIMEOUT_S each time, until MAX_JOB_TIME_S
    has passed: the last extension runs out up to their sum after the receive. SQS refuses to
    extend past 12 h since the receive, and the job would be cancelled as having lost its lease.

    DRAIN_TIMEOUT_S adds nothing: the keeper goes on stopping at MAX_JOB_TIME_S while the daemon
    drains, and what is left at the end is released, not extended.
    """
    horizon = settings.max_job_time_s + settings.visibility_timeout_s
    if horizon <= SQS_MAX_VISIBILITY_TIMEOUT_S:
        return None
    return (
        f"{ENV_PREFIX}MAX_JOB_TIME_S ({settings.max_job_time_s}) + "
        f"{ENV_PREFIX}VISIBILITY_TIMEOUT_S ({settings.visibility_timeout_s}) is {horizon} s, "
        f"over SQS's {SQS_MAX_VISIBILITY_TIMEOUT_S // 3600} h ({SQS_MAX_VISIBILITY_TIMEOUT_S} s) "
        "limit on a message's visibility since its receive: the last lease extensions would fail"
    )


def _retry_delays_are_ordered(settings: Settings) -> str | None:
    # The backoff doubles from the base and is cut at the maximum: a base above it means the
    # backoff never grows, which is never what was meant.
    if settings.retry_base_delay_s <= settings.retry_max_delay_s:
        return None
    return (
        f"{ENV_PREFIX}RETRY_BASE_DELAY_S ({settings.retry_base_delay_s:g}) must be at most "
        f"{ENV_PREFIX}RETRY_MAX_DELAY_S ({settings.retry_max_delay_s:g})"
    )


def _claim_outlives_renewals(settings: Settings) -> str | None:
    shortest = math.ceil(2 * settings.lease_renew_interval_s)
    if settings.claim_lease_s >= shortest:
        return None
    return (
        f"{ENV_PREFIX}CLAIM_LEASE_S ({settings.claim_lease_s}) must be at least {shortest} s, "
        f"twice the lease renewal interval (a third of {ENV_PREFIX}VISIBILITY_TIMEOUT_S, "
        f"{settings.visibility_timeout_s})"
    )


_RELATIONS = (
    _job_fits_in_max_job_time,
    _retry_delays_are_ordered,
    _claim_outlives_renewals,
)

_BACKEND_CHECKS = {
    "aws": (_backend_settings_present, _leases_end_within_sqs_limit),
    # Pub/Sub bounds each deadline, not the time since the receive: extensions go on forever.
    "gcp": (_backend_settings_present, _leases_within_ack_deadline_limit),
}


def _staging_dir_problem(tmp_dir: str | None) -> str | None:
    """What is wrong with where jobs stage files (``tmp_dir``, or the system's), or None."""
    if tmp_dir == "":
        return "is empty; unset it to use the system temporary directory"
    if tmp_dir is not None:
        return _directory_problem(tmp_dir)
    try:
        # What tempfile, and so every job, falls back to; it may itself find none usable.
        system_dir = tempfile.gettempdir()
    except OSError as error:
        return f"is unset and no system temporary directory is usable: {error}"
    problem = _directory_problem(system_dir)
    return None if problem is None else f"is unset and the system temporary directory {problem}"


def _directory_problem(path: str) -> str | None:
    """Why no file can be created in ``path``, or None.

    A file is really created (and removed): os.access says yes to root whatever the mode, and
    on a read-only mount. Paths are quoted with repr() so the message stays on one line.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"{path!r} does not exist"
    except OSError as error:
        return f"{path!r} cannot be reached: {error.strerror or error}"
    if not stat.S_ISDIR(mode):
        return f"{path!r} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".pipelined-probe-"):
            pass
    except OSError as error:  # even ENOENT here (procfs says so) means "cannot create"
        return f"{path!r} is not writable: {error.strerror or error}"
    return None


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

from pathlib import Path

import pytest

from pipelined.errors import ConfigError
from pipelined.settings import load_settings

REQUIRED = {
    "PIPELINED_QUEUE_URL": "http://127.0.0.1:1/123/jobs",
    "PIPELINED_OUTPUT_BUCKET": "artifacts",
    "PIPELINED_TABLE": "jobs",
    "PIPELINED_TOPIC_ARN": "arn:aws:sns:us-east-1:123:results",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_defaults_and_lists(env: pytest.MonkeyPatch) -> None:
    env.setenv("PIPELINED_THUMBNAIL_SIZES", "1024, 256,256")
    env.setenv("PIPELINED_OUTPUT_PREFIX", "/out/derived/")
    settings = load_settings()
    assert settings.thumbnail_sizes == (256, 1024)
    assert settings.output_prefix == "out/derived/"
    assert settings.max_inflight == 8


def test_a_missing_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        if name != "PIPELINED_TABLE":
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="PIPELINED_TABLE is required"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PIPELINED_MAX_INFLIGHT", "0"),
        ("PIPELINED_MAX_INFLIGHT", "many"),
        ("PIPELINED_THUMBNAIL_SIZES", "256,huge"),
        ("PIPELINED_VISIBILITY_TIMEOUT_S", "50000"),
        ("PIPELINED_THUMBNAIL_FORMAT", "bmp"),
        ("PIPELINED_WEBP_METHOD", "7"),
        ("PIPELINED_AVIF_SPEED", "-1"),
    ],
)
def test_a_bad_value_is_named(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=name) as error:
        load_settings()
    assert "\n" not in str(error.value)


def test_relations_between_settings_are_checked(env: pytest.MonkeyPatch) -> None:
    env.setenv("PIPELINED_JOB_TIMEOUT_S", "600")
    env.setenv("PIPELINED_MAX_JOB_TIME_S", "300")
    with pytest.raises(ConfigError, match="PIPELINED_MAX_JOB_TIME_S"):
        load_settings()


def test_a_dotenv_file_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lines = [f"{name}={value}" for name, value in REQUIRED.items()]
    (tmp_path / ".env").write_text("\n".join([*lines, "PIPELINED_MAX_INFLIGHT=3", ""]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPELINED_WORKERS", "5")  # the environment wins over the file
    settings = load_settings()
    assert (settings.max_inflight, settings.workers, settings.table) == (3, 5, "jobs")


def test_aws_region_is_read_from_either_standard_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert load_settings().aws_region == "eu-west-1"
    env.setenv("AWS_REGION", "eu-central-1")
    assert load_settings().aws_region == "eu-central-1"


GCP = {
    "PIPELINED_BACKEND": "gcp",
    "PIPELINED_SUBSCRIPTION": "projects/media-prod/subscriptions/uploads",
    "PIPELINED_TOPIC": "projects/media-prod/topics/results",
    "PIPELINED_OUTPUT_BUCKET": "artifacts",
}


@pytest.fixture
def gcp_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in GCP.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_the_gcp_backend_takes_its_project_from_the_environment_or_the_subscription(
    gcp_env: pytest.MonkeyPatch,
) -> None:
    resources = load_settings().gcp()
    assert (resources.project, resources.collection, resources.database) == (
        "media-prod",
        "pipelined-jobs",
        "(default)",
    )
    gcp_env.setenv("GOOGLE_CLOUD_PROJECT", "media-ledger")
    assert load_settings().gcp().project == "media-ledger"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PIPELINED_TABLE", "jobs"),
        ("PIPELINED_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123/jobs"),
        ("PIPELINED_TOPIC_ARN", "arn:aws:sns:eu-west-1:123:results"),
    ],
)
def test_a_setting_of_aws_stops_the_gcp_backend_and_is_named(
    gcp_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    gcp_env.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name} is for PIPELINED_BACKEND=aws"):
        load_settings()


def test_a_setting_of_gcp_stops_the_aws_backend_and_is_named(env: pytest.MonkeyPatch) -> None:
    env.setenv("PIPELINED_COLLECTION", "jobs")
    env.setenv("PIPELINED_SUBSCRIPTION", "projects/p/subscriptions/s")
    with pytest.raises(
        ConfigError,
        match="PIPELINED_SUBSCRIPTION, PIPELINED_COLLECTION are for PIPELINED_BACKEND=gcp",
    ):
        load_settings()


def test_a_missing_gcp_setting_is_named(gcp_env: pytest.MonkeyPatch) -> None:
    gcp_env.delenv("PIPELINED_TOPIC")
    with pytest.raises(ConfigError, match="PIPELINED_TOPIC is required with PIPELINED_BACKEND=gcp"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PIPELINED_SUBSCRIPTION", "uploads"),
        ("PIPELINED_SUBSCRIPTION", "projects/p/topics/uploads"),
        ("PIPELINED_TOPIC", "projects/p/subscriptions/results"),
        ("PIPELINED_COLLECTION", "jobs/nested"),
        ("PIPELINED_BACKEND", "azure"),
    ],
)
def test_a_malformed_gcp_setting_is_named(
    gcp_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    gcp_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_a_lease_longer_than_an_ack_deadline_can_be_is_refused_on_gcp(
    gcp_env: pytest.MonkeyPatch,
) -> None:
    gcp_env.setenv("PIPELINED_VISIBILITY_TIMEOUT_S", "900")
    gcp_env.setenv("PIPELINED_CLAIM_LEASE_S", "900")
    with pytest.raises(ConfigError, match=r"PIPELINED_VISIBILITY_TIMEOUT_S .* 600 s"):
        load_settings()


def test_a_signed_url_over_seven_days_is_refused(gcp_env: pytest.MonkeyPatch) -> None:
    gcp_env.setenv("PIPELINED_PRESIGN_TTL_S", str(7 * 24 * 3600 + 1))
    with pytest.raises(ConfigError, match="PIPELINED_PRESIGN_TTL_S"):
        load_settings()

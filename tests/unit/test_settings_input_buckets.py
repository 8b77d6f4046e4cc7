"""PIPELINED_INPUT_BUCKETS: a comma-separated list of bucket names, each checked at start-up."""

from __future__ import annotations

import pytest

from pipelined.errors import ConfigError
from pipelined.settings import load_settings
from tests.unit.test_settings import env  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("env")


def test_unset_means_any_bucket() -> None:
    assert load_settings().input_buckets == ()


def test_a_list_is_split_trimmed_and_kept_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINED_INPUT_BUCKETS", " uploads , my.photos,uploads,gcs_bucket-1")
    assert load_settings().input_buckets == ("uploads", "my.photos", "gcs_bucket-1")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "is empty; unset it"),
        ("uploads,,photos", "no empty item"),
        ("uploads,", "no empty item"),
        ("Uploads", "'Uploads', not a bucket name"),
        ("up", "'up', not a bucket name"),
        ("s3://uploads", "'s3://uploads', not a bucket name"),
    ],
)
def test_a_bad_list_stops_start_up_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("PIPELINED_INPUT_BUCKETS", value)
    with pytest.raises(ConfigError, match="PIPELINED_INPUT_BUCKETS") as error:
        load_settings()
    assert says in str(error.value)

"""Settings that would break an SQS limit, spin, hide uploads or fail every job are refused."""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pipelined.app import _warn_if_drain_cuts_long_polls, consumer_config
from pipelined.errors import ConfigError
from pipelined.quotas import SQS_MAX_VISIBILITY_TIMEOUT_S
from pipelined.settings import Settings, load_settings
from tests.unit.test_settings import REQUIRED

TWELVE_HOURS = SQS_MAX_VISIBILITY_TIMEOUT_S


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def refusal(env: pytest.MonkeyPatch, **settings: object) -> str:
    """Set ``settings`` as PIPELINED_* variables; return the one-line refusal."""
    for name, value in settings.items():
        env.setenv(f"PIPELINED_{name.upper()}", str(value))
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "\n" not in message
    assert "\r" not in message
    assert message.startswith("invalid settings: PIPELINED_")
    return message


def accepted(env: pytest.MonkeyPatch, **settings: object) -> Settings:
    for name, value in settings.items():
        env.setenv(f"PIPELINED_{name.upper()}", str(value))
    return load_settings()


# 1. The lease keeper extends up to MAX_JOB_TIME_S; the last extension reaches about
#    MAX_JOB_TIME_S + VISIBILITY_TIMEOUT_S after the receive, and SQS refuses past 12 h.


@pytest.mark.parametrize(
    ("max_job_time_s", "visibility_timeout_s"),
    [
        (900, TWELVE_HOURS),  # each alone is within its bound
        (TWELVE_HOURS, 60),
        (TWELVE_HOURS // 2, TWELVE_HOURS // 2 + 1),  # one second over
    ],
)
def test_leases_extended_past_twelve_hours_are_refused(
    env: pytest.MonkeyPatch, max_job_time_s: int, visibility_timeout_s: int
) -> None:
    message = refusal(
        env,
        max_job_time_s=max_job_time_s,
        visibility_timeout_s=visibility_timeout_s,
        claim_lease_s=TWELVE_HOURS,
    )
    assert "PIPELINED_MAX_JOB_TIME_S" in message
    assert "PIPELINED_VISIBILITY_TIMEOUT_S" in message
    assert "12 h" in message


def test_leases_up_to_exactly_twelve_hours_are_accepted(env: pytest.MonkeyPatch) -> None:
    # The drain does not count: the lease keeper still stops extending at MAX_JOB_TIME_S while
    # the daemon drains, so a long drain cannot carry a lease further.
    settings = accepted(
        env,
        max_job_time_s=TWELVE_HOURS // 2,
        visibility_timeout_s=TWELVE_HOURS // 2,
        claim_lease_s=TWELVE_HOURS,
        drain_timeout_s=3600,
    )
    assert settings.max_job_time_s + settings.visibility_timeout_s == TWELVE_HOURS


# 2. Retry delays.


def test_a_base_retry_delay_above_the_maximum_is_refused(env: pytest.MonkeyPatch) -> None:
    message = refusal(env, retry_base_delay_s=1000, retry_max_delay_s=900)
    assert "PIPELINED_RETRY_BASE_DELAY_S" in message
    assert "PIPELINED_RETRY_MAX_DELAY_S" in message


def test_a_zero_base_retry_delay_is_refused(env: pytest.MonkeyPatch) -> None:
    # 0 doubles to 0: every retry would come back after the 1 s floor, with no backoff at all.
    assert "PIPELINED_RETRY_BASE_DELAY_S" in refusal(env, retry_base_delay_s=0)


def test_equal_base_and_maximum_retry_delays_are_accepted(env: pytest.MonkeyPatch) -> None:
    settings = accepted(env, retry_base_delay_s=0.5, retry_max_delay_s=1)
    assert (settings.retry_base_delay_s, settings.retry_max_delay_s) == (0.5, 1)
    assert accepted(env, retry_base_delay_s=60, retry_max_delay_s=60).retry_max_delay_s == 60


@pytest.mark.parametrize("count", [-1, 11])
def test_retries_in_place_out_of_range_are_refused(env: pytest.MonkeyPatch, count: int) -> None:
    assert "PIPELINED_RETRIES_IN_PLACE" in refusal(env, retries_in_place=count)


def test_retries_in_place_reach_the_consumer(env: pytest.MonkeyPatch) -> None:
    assert consumer_config(accepted(env)).retries_in_place == 2
    assert consumer_config(accepted(env, retries_in_place=0)).retries_in_place == 0


@pytest.mark.parametrize(
    "name", ["drain_timeout_s", "retry_base_delay_s", "job_timeout_s", "delete_flush_s"]
)
def test_infinite_durations_are_refused(env: pytest.MonkeyPatch, name: str) -> None:
    # An infinite drain passed validation, then crashed the shutdown in sd_notify's int().
    assert f"PIPELINED_{name.upper()}" in refusal(env, **{name: "inf"})


# 3. The claim lease is also applied as an SQS visibility delay to a delivery that meets it.


def test_a_claim_lease_over_twelve_hours_is_refused(env: pytest.MonkeyPatch) -> None:
    assert "PIPELINED_CLAIM_LEASE_S" in refusal(env, claim_lease_s=TWELVE_HOURS + 1)
    assert accepted(env, claim_lease_s=TWELVE_HOURS).claim_lease_s == TWELVE_HOURS


def test_a_claim_lease_short_next_to_the_renewal_interval_is_refused(
    env: pytest.MonkeyPatch,
) -> None:
    # Renewals come every third of the visibility timeout (20 s here): at least 40 s.
    message = refusal(env, visibility_timeout_s=60, claim_lease_s=39)
    assert "PIPELINED_CLAIM_LEASE_S (39)" in message
    assert "PIPELINED_VISIBILITY_TIMEOUT_S" in message
    assert accepted(env, visibility_timeout_s=60, claim_lease_s=40).claim_lease_s == 40


# 4. A zero long-poll wait makes an idle poller spin on empty receives.


def test_a_zero_wait_time_is_refused(env: pytest.MonkeyPatch) -> None:
    assert "PIPELINED_WAIT_TIME_S" in refusal(env, wait_time_s=0)
    assert accepted(env, wait_time_s=1).wait_time_s == 1


# 5. With no prefix, every upload to a shared output bucket looks like pipelined's own artifact.


@pytest.mark.parametrize("prefix", ["", "/", "///"])
def test_an_empty_output_prefix_is_refused(env: pytest.MonkeyPatch, prefix: str) -> None:
    message = refusal(env, output_prefix=prefix)
    assert "PIPELINED_OUTPUT_PREFIX" in message
    assert "shared bucket" in message


# 6. A staging directory every job would fail in.


@contextmanager
def permission_bits_enforced() -> Iterator[None]:
    """Make this thread subject to file permission bits, even as root.

    Root writes through a chmod-ed directory thanks to CAP_DAC_OVERRIDE. Clearing it (and
    CAP_DAC_READ_SEARCH) from the thread's effective set, but not the permitted one, lets the
    block see what an unprivileged daemon would, and the capabilities are raised again after.
    """
    if os.geteuid() != 0:
        yield
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        capget, capset = libc.capget, libc.capset
    except (OSError, AttributeError):
        pytest.skip("running as root without capget/capset: a chmod cannot stop root's writes")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    caps = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable; low 32 bits first
    if capget(header, caps) != 0:
        pytest.skip(f"capget failed: {os.strerror(ctypes.get_errno())}")
    saved = caps[0]
    caps[0] &= ~((1 << 1) | (1 << 2))  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if capset(header, caps) != 0:
        pytest.skip(f"capset failed: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        caps[0] = saved
        assert capset(header, caps) == 0


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    directory.chmod(0o555)
    try:
        with permission_bits_enforced():
            yield
    finally:
        directory.chmod(0o755)


def test_a_missing_tmp_dir_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    message = refusal(env, tmp_dir=tmp_path / "gone")
    assert "PIPELINED_TMP_DIR" in message
    assert "does not exist" in message


def test_a_file_as_tmp_dir_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    message = refusal(env, tmp_dir=tmp_path / "file")
    assert "PIPELINED_TMP_DIR" in message
    assert "not a directory" in message


def test_a_read_only_tmp_dir_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("PIPELINED_TMP_DIR", str(tmp_path))
    with read_only(tmp_path), pytest.raises(ConfigError) as error:
        load_settings()
    assert "PIPELINED_TMP_DIR" in str(error.value)
    assert "not writable" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_tmp_dir_is_refused(env: pytest.MonkeyPatch) -> None:
    assert "PIPELINED_TMP_DIR" in refusal(env, tmp_dir="")


def test_an_unusable_system_temporary_directory_is_refused_when_tmp_dir_is_unset(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setattr(tempfile, "tempdir", str(tmp_path / "gone"))  # what gettempdir() answers
    message = refusal(env)
    assert "PIPELINED_TMP_DIR" in message
    assert "system temporary directory" in message


def test_a_writable_tmp_dir_is_accepted_and_left_as_found(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert accepted(env, tmp_dir=tmp_path).tmp_dir == str(tmp_path)
    assert list(tmp_path.iterdir()) == [], "the probe file is removed"


# Messages stay one line and in _describe's format, whatever the input.


def test_a_refusal_quoting_a_value_stays_one_line(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    message = refusal(env, tmp_dir=f"{tmp_path}/line\nbreak")
    assert message.startswith("invalid settings: PIPELINED_TMP_DIR ")


def test_several_bad_values_are_named_in_one_line(env: pytest.MonkeyPatch) -> None:
    message = refusal(env, wait_time_s=0, output_prefix="/")
    assert message.count("; PIPELINED_") == 1
    assert "PIPELINED_WAIT_TIME_S" in message
    assert "PIPELINED_OUTPUT_PREFIX" in message


def test_several_broken_relations_are_named_in_one_line(env: pytest.MonkeyPatch) -> None:
    message = refusal(env, max_job_time_s=TWELVE_HOURS, retry_base_delay_s=1000)
    assert message.count("; PIPELINED_") == 1
    assert "PIPELINED_MAX_JOB_TIME_S" in message
    assert "PIPELINED_RETRY_BASE_DELAY_S" in message


# A drain shorter than the long poll is allowed, but start-up says what it costs.


@pytest.mark.parametrize(("drain_timeout_s", "warned"), [(5, True), (20, False), (30, False)])
def test_a_drain_shorter_than_the_long_poll_is_warned_of(
    env: pytest.MonkeyPatch, drain_timeout_s: int, warned: bool
) -> None:
    settings = accepted(env, drain_timeout_s=drain_timeout_s, wait_time_s=20)
    with capture_logs() as logs:
        _warn_if_drain_cuts_long_polls(settings)
    warnings = [e for e in logs if e["event"] == "drain_shorter_than_long_poll"]
    assert bool(warnings) is warned

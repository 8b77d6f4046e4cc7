"""Shared fixtures: one moto server per session, fresh resources per test, clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pipelined.local import LocalStack, emulator, provision
from tests.ministack import ministack

AWS_EMULATORS = ("moto", "ministack")

# Google's emulator variables: a test sets those of its own stack. (The session's emulators
# start before this clean-up, so PIPELINED_*_EMULATOR_JAR still reaches them.)
EMULATORS = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may see a real AWS profile or Google project, a real endpoint or a developer's
    settings."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PIPELINED_", "GOOGLE_", "CLOUDSDK_")) or name in EMULATORS:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.chdir(os.path.dirname(__file__))  # so no developer's .env is read


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with emulator() as url:
        yield url


@pytest.fixture(scope="session")
def ministack_url() -> Iterator[str]:
    with ministack() as running:
        yield running.url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``every_aws_emulator`` runs once on each AWS emulator; the rest on moto."""
    if "aws_emulator" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "every_aws_emulator"
    ):
        metafunc.parametrize("aws_emulator", AWS_EMULATORS, indirect=True, scope="session")


@pytest.fixture(scope="session")
def aws_emulator(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "moto"))


@pytest.fixture(scope="session")
def emulator_url(aws_emulator: str, request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{aws_emulator}_url")
    return url


@pytest.fixture
def stack(emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """Freshly provisioned resources with random names, and this process pointed at them."""
    provisioned = provision(emulator_url)
    for name, value in provisioned.daemon_environment().items():
        monkeypatch.setenv(name, value)
    return provisioned

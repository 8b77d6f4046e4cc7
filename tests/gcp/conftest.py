"""The Firestore and Pub/Sub emulators, one each per session, and clients of them in a project
of their own per test.

Each emulator is the jar of a gcloud component (``cloud-firestore-emulator``,
``pubsub-emulator``), run with java directly: ``gcloud emulators ... start`` wraps it in
processes that leave java running when they are stopped. A jar is found from its override
variable (PIPELINED_FIRESTORE_EMULATOR_JAR, PIPELINED_PUBSUB_EMULATOR_JAR), else in the Cloud SDK
that ``gcloud`` reports; without java or the jar, the tests that need it are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.pubsub_v1 import types as pubsub
from google.pubsub_v1.services.publisher import PublisherAsyncClient
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient

from pipelined.local import free_port

JAR_OVERRIDE = "PIPELINED_FIRESTORE_EMULATOR_JAR"
JAR_IN_SDK = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
PUBSUB_JAR_OVERRIDE = "PIPELINED_PUBSUB_EMULATOR_JAR"
# Versioned (cloud-pubsub-emulator-0.8.20-all.jar), so globbed.
PUBSUB_JAR_IN_SDK = "platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar"
# The jar's manifest names no main class: this is the one gcloud's own wrapper script runs.
MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SUBSCRIPTION_ACK_DEADLINE_S = 10  # the least a subscription may have; receives set their own
MAX_DELIVERY_ATTEMPTS = 5


def emulator_jar(
    override: str = JAR_OVERRIDE,
    in_sdk: str = JAR_IN_SDK,
    component: str = "cloud-firestore-emulator",
) -> Path:
    """An emulator's jar (``in_sdk`` may be a glob), or skip saying what is missing."""
    named = os.environ.get(override)
    if named:
        jar = Path(named)
    else:
        sdk = _sdk_root(override)
        # The last in name order, should a component update ever leave two versions behind.
        jar = max(sdk.glob(in_sdk), default=sdk / in_sdk)
    if not jar.is_file():
        pytest.skip(
            f"no emulator at {jar}: install the gcloud component {component},"
            f" or set {override} to its jar"
        )
    return jar


def _sdk_root(override: str) -> Path:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip(f"no gcloud on PATH to find the emulator in; or set {override}")
    answer = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return Path(answer.stdout.strip())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            output = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"the emulator did not come up at {url}:\n{output}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on PATH to run the emulator with")
    return java


@contextmanager
def _running(command: list[str], port: int, log: Path) -> Iterator[str]:
    """Run an emulator listening on 127.0.0.1:``port``; yield that host:port, then stop it."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(process, f"http://127.0.0.1:{port}/", log)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run the emulator on 127.0.0.1 and a free port; yield its host:port."""
    java = _java()
    jar = emulator_jar()
    port = free_port()
    log = tmp_path_factory.mktemp("firestore-emulator") / "emulator.log"
    # English messages, as gcloud's wrapper asks for: the emulator knows no others.
    command = [java, "-Duser.language=en", "-cp", str(jar), MAIN_CLASS, "start"]
    command += ["--host=127.0.0.1", f"--port={port}", "--database-mode=firestore-native"]
    with _running(command, port, log) as host:
        yield host


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run the Pub/Sub emulator on 127.0.0.1 and a free port; yield its host:port.

    Its jar names its main class, and takes the flags bin/cloud-pubsub-emulator passes on.
    """
    java = _java()
    jar = emulator_jar(PUBSUB_JAR_OVERRIDE, PUBSUB_JAR_IN_SDK, "pubsub-emulator")
    port = free_port()
    log = tmp_path_factory.mktemp("pubsub-emulator") / "emulator.log"
    command = [java, "-jar", str(jar), "--host=127.0.0.1", f"--port={port}"]
    with _running(command, port, log) as host:
        yield host


@pytest.fixture
def firestore_client(
    firestore_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> firestore.AsyncClient:
    """A client of the emulator, in a fresh project: no test sees another's documents.

    Anonymous credentials, so no developer's or machine's Google credentials are ever looked
    up, let alone sent.
    """
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
    project = f"pipelined-test-{uuid.uuid4().hex[:12]}"
    return firestore.AsyncClient(project=project, credentials=AnonymousCredentials())


@dataclass(frozen=True)
class PubSub:
    """Clients of the Pub/Sub emulator in a project of this test's own."""

    project: str
    publisher: PublisherAsyncClient
    subscriber: SubscriberAsyncClient

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    async def pull_subscription(self, name: str, *, dead_letter: bool = False) -> str:
        """A topic and a pull subscription of it, both called ``name`` (3 characters or more).

        With ``dead_letter``, messages go after MAX_DELIVERY_ATTEMPTS to the topic
        ``name``-dead, which a subscription of its own keeps. No retry policy: with one, the
        emulator (0.8.20) stops redelivering after the third expiry.
        """
        topic = (await self.publisher.create_topic(name=self.topic(name))).name
        subscription = pubsub.Subscription(
            name=self.subscription(name),
            topic=topic,
            ack_deadline_seconds=SUBSCRIPTION_ACK_DEADLINE_S,
        )
        if dead_letter:
            dead = (await self.publisher.create_topic(name=self.topic(f"{name}-dead"))).name
            await self.subscriber.create_subscription(
                request=pubsub.Subscription(name=self.subscription(f"{name}-dead"), topic=dead)
            )
            subscription.dead_letter_policy = pubsub.DeadLetterPolicy(
                dead_letter_topic=dead, max_delivery_attempts=MAX_DELIVERY_ATTEMPTS
            )
        return (await self.subscriber.create_subscription(request=subscription)).name

    async def publish(self, name: str, body: bytes, attributes: dict[str, str]) -> None:
        message = pubsub.PubsubMessage(data=body, attributes=attributes)
        await self.publisher.publish(topic=self.topic(name), messages=[message])


@pytest.fixture
async def pubsub_clients(
    pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PubSub]:
    """Clients of the emulator, in a fresh project: no test sees another's topics.

    Anonymous credentials, as for Firestore: no real Google credentials are looked up.
    """
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    project = f"pipelined-test-{uuid.uuid4().hex[:12]}"
    publisher = PublisherAsyncClient(credentials=AnonymousCredentials())
    subscriber = SubscriberAsyncClient(credentials=AnonymousCredentials())
    try:
        yield PubSub(project, publisher, subscriber)
    finally:
        await publisher.transport.close()
        await subscriber.transport.close()

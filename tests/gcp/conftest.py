"""The Firestore emulator, one per session, and a client of it in a project of its own per test.

The emulator is the jar of gcloud's ``cloud-firestore-emulator`` component, run with java
directly: ``gcloud emulators firestore start`` wraps it in processes that leave java running
when they are stopped. The jar is found from PIPELINED_FIRESTORE_EMULATOR_JAR, else in the
Cloud SDK that ``gcloud`` reports; without java or the jar, the tests that need it are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from pipelined.local import free_port

JAR_OVERRIDE = "PIPELINED_FIRESTORE_EMULATOR_JAR"
JAR_IN_SDK = Path("platform", "cloud-firestore-emulator", "cloud-firestore-emulator.jar")
# The jar's manifest names no main class: this is the one gcloud's own wrapper script runs.
MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def emulator_jar() -> Path:
    """The emulator's jar, or skip saying what is missing."""
    override = os.environ.get(JAR_OVERRIDE)
    jar = Path(override) if override else _sdk_root() / JAR_IN_SDK
    if not jar.is_file():
        pytest.skip(
            f"no Firestore emulator at {jar}: install the gcloud component"
            f" cloud-firestore-emulator, or set {JAR_OVERRIDE} to its jar"
        )
    return jar


def _sdk_root() -> Path:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip(f"no gcloud on PATH to find the Firestore emulator in; or set {JAR_OVERRIDE}")
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
            raise RuntimeError(f"the Firestore emulator did not come up at {url}:\n{output}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run the emulator on 127.0.0.1 and a free port; yield its host:port."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on PATH to run the Firestore emulator with")
    jar = emulator_jar()
    port = free_port()
    log = tmp_path_factory.mktemp("firestore-emulator") / "emulator.log"
    # English messages, as gcloud's wrapper asks for: the emulator knows no others.
    command = [java, "-Duser.language=en", "-cp", str(jar), MAIN_CLASS, "start"]
    command += ["--host=127.0.0.1", f"--port={port}", "--database-mode=firestore-native"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(process, f"http://127.0.0.1:{port}/", log)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


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

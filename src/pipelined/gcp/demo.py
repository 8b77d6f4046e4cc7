"""The embedded Google Cloud stack as ``pipelined demo`` and ``pipelined local`` use it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from google.cloud import firestore

from pipelined.gcp.local import ANONYMOUS, GcpStack, apply_environment, gcp_stack, subscriber
from pipelined.samples import Sample
from pipelined.tools import take_messages

PULL_TIMEOUT_S = 1.0


@contextmanager
def gcp_demo_stack(name: str) -> Iterator[GcpDemoStack]:
    # Detached: a Ctrl-C is the daemon's to drain on; the emulators are stopped after it.
    with gcp_stack(name, detached=True) as stack:
        apply_environment(stack)
        yield GcpDemoStack(stack)


class GcpDemoStack:
    scheme = "gs"

    def __init__(self, stack: GcpStack) -> None:
        self._stack = stack
        self.input_bucket = stack.input_bucket

    def upload(self, samples: list[Sample]) -> None:
        bucket = self._stack.storage_client().bucket(self.input_bucket)
        for sample in samples:
            bucket.blob(sample.key).upload_from_string(
                sample.body, content_type=sample.content_type
            )

    def notifications(self, wanted: set[str], deadline: float) -> dict[str, dict[str, Any]]:
        """Pull the results topic's subscription."""
        client = subscriber(self._stack.emulators.pubsub_host)
        subscription = self._stack.watch_subscription
        found: dict[str, dict[str, Any]] = {}
        while wanted - found.keys() and time.monotonic() < deadline:
            for message in take_messages(client, subscription, PULL_TIMEOUT_S):
                notification = json.loads(message.data)
                notification["_attributes"] = dict(message.attributes)
                found[str(notification["source"]["key"])] = notification
        return found

    def ledger(self) -> dict[str, tuple[str, str]]:
        client = firestore.Client(project=self._stack.project, credentials=ANONYMOUS)
        documents = client.collection(self._stack.collection).stream()
        return {
            str(fields["object_key"]): (
                str(fields.get("status", "?")),
                str(fields.get("attempts", "?")),
            )
            for fields in (document.to_dict() or {} for document in documents)
        }

    def download(self, bucket: str, key: str) -> bytes:
        blob = self._stack.storage_client().bucket(bucket).blob(key)
        body: bytes = blob.download_as_bytes()
        return body

    def instructions(self, metrics_port: int) -> str:
        stack = self._stack
        exports = " ".join(f"{name}={value}" for name, value in stack.google_environment().items())
        return f"""
pipelined is running on the embedded Google Cloud stack (Pub/Sub {stack.emulators.pubsub_host},
Firestore {stack.emulators.firestore_host}, Cloud Storage {stack.emulators.storage_url})

  input bucket   gs://{stack.input_bucket}   (artifacts go to gs://{stack.output_bucket}/pipelined/)
  subscription   {stack.subscription}
  dead letters   {stack.dead_letter_subscription}
  ledger         Firestore collection {stack.collection} in project {stack.project}
  results topic  {stack.results_topic}  (read back through {stack.watch_subscription})
  metrics        http://127.0.0.1:{metrics_port}/metrics  (/healthz, /readyz)

In another terminal:
  export {exports}
  .venv/bin/pipelined upload path/to/photo.jpg --bucket {stack.input_bucket} --backend gcp
  .venv/bin/pipelined watch --subscription {stack.watch_subscription}

Ctrl-C drains and stops."""

"""Long-lived Google Cloud clients, opened once and closed together by an AsyncExitStack.

Endpoints and identity come from Google's standard variables: Application Default Credentials,
GOOGLE_CLOUD_PROJECT, and each service's emulator variable. A client whose emulator variable is
set gets anonymous credentials, so no developer's real credentials are ever looked up for it.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass

import google.auth
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import firestore, storage
from google.oauth2 import service_account
from google.pubsub_v1.services.publisher import PublisherAsyncClient
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
from requests.adapters import HTTPAdapter

PUBSUB_EMULATOR = "PUBSUB_EMULATOR_HOST"
FIRESTORE_EMULATOR = "FIRESTORE_EMULATOR_HOST"
STORAGE_EMULATOR = "STORAGE_EMULATOR_HOST"
CREDENTIALS_FILE = "GOOGLE_APPLICATION_CREDENTIALS"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass(frozen=True)
class GoogleClients:
    subscriber: SubscriberAsyncClient
    publisher: PublisherAsyncClient
    firestore: firestore.AsyncClient
    storage: storage.Client
    signing_credentials: Credentials
    """What signs URLs: the storage client's credentials, but see _signing_credentials."""
    storage_executor: ThreadPoolExecutor


def credentials_for(emulator_variable: str) -> Credentials:
    """Anonymous credentials for an emulated service, else Application Default Credentials."""
    if os.environ.get(emulator_variable):
        return AnonymousCredentials()
    return _application_default_credentials()


@functools.cache
def _application_default_credentials() -> Credentials:
    # Looked up once and shared: each lookup may ask the metadata server, and one set of
    # credentials refreshes one token for every client.
    found, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    credentials: Credentials = found
    return credentials


async def open_clients(
    stack: AsyncExitStack, project: str, database: str, max_connections: int
) -> GoogleClients:
    """Open every client once. ``max_connections`` bounds Cloud Storage's threads and pool."""
    subscriber = SubscriberAsyncClient(credentials=credentials_for(PUBSUB_EMULATOR))
    stack.push_async_callback(subscriber.transport.close)
    publisher = PublisherAsyncClient(credentials=credentials_for(PUBSUB_EMULATOR))
    stack.push_async_callback(publisher.transport.close)
    ledger = firestore.AsyncClient(
        project=project, database=database, credentials=credentials_for(FIRESTORE_EMULATOR)
    )
    storage_credentials = credentials_for(STORAGE_EMULATOR)
    storage_client = storage.Client(
        project=project,
        credentials=storage_credentials,
        _http=_pooled_session(storage_credentials, max_connections),
        client_options=_storage_emulator_endpoint(),
    )
    stack.callback(storage_client.close)
    executor = ThreadPoolExecutor(max_connections, thread_name_prefix="gcs")
    stack.callback(executor.shutdown, wait=False, cancel_futures=True)
    return GoogleClients(
        subscriber=subscriber,
        publisher=publisher,
        firestore=ledger,
        storage=storage_client,
        signing_credentials=_signing_credentials(storage_credentials),
        storage_executor=executor,
    )


def _storage_emulator_endpoint() -> dict[str, str] | None:
    """STORAGE_EMULATOR_HOST as an endpoint. The client takes it as a URL, while the other
    emulator variables are host:port, and it is often written so too: a value without a scheme
    is taken to mean plain HTTP, rather than failing every request."""
    host = os.environ.get(STORAGE_EMULATOR, "")
    if not host or "://" in host:
        return None  # the client reads the variable itself
    return {"api_endpoint": f"http://{host}"}


def _signing_credentials(storage_credentials: Credentials) -> Credentials:
    """The storage client's credentials, unless it talks to the emulator anonymously and a key
    file is named by GOOGLE_APPLICATION_CREDENTIALS: then that key signs (the emulator checks no
    signature, but a signed URL needs a signer all the same; its requests stay anonymous, since
    the key's tokens could only be fetched from Google)."""
    key_file = os.environ.get(CREDENTIALS_FILE)
    if not os.environ.get(STORAGE_EMULATOR) or not key_file:
        return storage_credentials
    # Only a service account's key can sign a URL.
    signer: Credentials = service_account.Credentials.from_service_account_file(key_file)
    return signer


def _pooled_session(credentials: Credentials, max_connections: int) -> AuthorizedSession:
    """requests keeps 10 connections per host by default: fewer than the daemon's concurrent
    transfers, which would each open a new one and drop it after."""
    session = AuthorizedSession(credentials)
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_connections)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session

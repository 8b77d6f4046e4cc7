"""A fault-injecting, HTTP-aware reverse proxy between AWS clients and an AWS endpoint.

Point a client (or a whole daemon, through ``AWS_ENDPOINT_URL``) at the proxy; the proxy
forwards every request byte for byte to the upstream endpoint (the emulator) and, when told to,
misbehaves instead:

- connection faults: ``delay`` (latency added before the request goes upstream), ``reset``
  (the client connection is closed abruptly, with a TCP RST, and the request never reaches
  upstream), ``reset_after`` (the request is forwarded and applied upstream, then the response is
  dropped the same way: the client cannot know it succeeded), ``blackhole`` (the request is
  accepted and never answered, until the client gives up), and ``refuse`` (the listening socket
  is closed and every open connection aborted, so connects are refused until ``accept``).
- AWS errors: a well-formed error response in the wire protocol of the service the request was
  for (S3 REST-XML, the JSON protocol of DynamoDB and SQS, the query protocol of SNS), which
  botocore parses into the intended error code.

Faults are rules: a matcher (service from the SigV4 credential scope, operation from
``X-Amz-Target``, ``Action=`` or the S3 method and path, and optionally the method, a path regex
or a body substring), an action, and when it fires (a probability, the next N matching requests,
for a duration). Counters record what was forwarded and what was injected.

Three ways to run it:

- in-process: ``async with FaultProxy(upstream) as proxy:`` on the running loop;
- in a thread with its own loop, for synchronous code: ``with ThreadedFaultProxy(upstream)``;
- as a process: ``python -m tests.faults.proxy --upstream URL --port N --control-port M``,
  driven through the JSON control endpoint (``ProxyClient``, or ``ProxyProcess`` which also
  starts and stops it).

Control endpoint (JSON): ``GET /health``, ``GET /stats``, ``POST /stats/reset``, ``GET /rules``,
``POST /rules`` (a rule as in ``Rule.to_json``, or ``{"action": "throttle", "service": ...}``),
``DELETE /rules``, ``DELETE /rules/{id}``, ``POST /refuse`` (``{"duration_s": 10}``, optional),
``POST /accept``.

Everything listens on 127.0.0.1 only. S3 requests are assumed path-style, which is what botocore
uses for an endpoint given as an IP address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol, Self, cast
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

from pipelined.local import free_port

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]

Action = Literal["delay", "reset", "reset_after", "blackhole", "error"]
ACTIONS: tuple[Action, ...] = ("delay", "reset", "reset_after", "blackhole", "error")
WireProtocol = Literal["json", "query", "rest-xml", "unknown"]

# Never forwarded: they describe one hop, not the request. Expect is answered by the proxy
# itself (100 Continue) and is not part of a SigV4 signature.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
# Headers aiohttp's client would add on its own; the forwarded request carries only the client's.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_CHUNK_BYTES = 64 * 1024
_LOST_BODY_BYTES = 16 * 1024
_LOST_KEPT = 10_000
_POLL_S = 0.05

# ---------------------------------------------------------------------------------------------
# What a request is: service, operation, wire protocol.
# ---------------------------------------------------------------------------------------------

_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_QUERY_CREDENTIAL = re.compile(r"^[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request$")


@dataclass(frozen=True)
class RequestInfo:
    """What the proxy made of one request."""

    service: str  # from the SigV4 credential scope: s3, sqs, dynamodb, sns; "unknown" without
    operation: str  # UpdateItem, ReceiveMessage, Publish, GetObject, ...
    protocol: WireProtocol
    method: str
    path: str  # without the query string, still percent-encoded

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation}"


def classify(method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> RequestInfo:
    """Work out service, operation and wire protocol the way AWS routes the request."""
    lowered = {name.lower(): value for name, value in headers.items()}
    split = urlsplit(raw_path)
    query = dict(parse_qsl(split.query, keep_blank_values=True))
    service = _service(lowered.get("authorization", ""), query.get("X-Amz-Credential", ""))
    path = split.path or "/"
    target = lowered.get("x-amz-target")
    if target:
        return RequestInfo(service, target.rsplit(".", 1)[-1], "json", method, path)
    if service == "s3":
        return RequestInfo(
            service, s3_operation(method, path, query, lowered), "rest-xml", method, path
        )
    action = query.get("Action")
    if action is None and "x-www-form-urlencoded" in lowered.get("content-type", ""):
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = form.get("Action")
    if action:
        return RequestInfo(service, action, "query", method, path)
    return RequestInfo(service, method, "unknown", method, path)


def _service(authorization: str, query_credential: str) -> str:
    found = _CREDENTIAL.search(authorization) or _QUERY_CREDENTIAL.match(query_credential)
    return found.group(2) if found else "unknown"


def s3_operation(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    """The S3 operation of a path-style request, from its method, path and sub-resources."""
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets" if method == "GET" else method
    if not key:
        return _s3_bucket_operation(method, query)
    copy = "x-amz-copy-source" in {name.lower() for name in headers}
    if method == "GET":
        if "uploadId" in query:
            return "ListParts"
        return _subresource("GetObject", query, ("tagging", "acl", "attributes"))
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "uploadId" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        if copy:
            return "CopyObject"
        return _subresource("PutObject", query, ("tagging", "acl", "retention", "legal-hold"))
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "restore" in query:
            return "RestoreObject"
        return "SelectObjectContent" if "select" in query else "PostObject"
    return method


def _s3_bucket_operation(method: str, query: Mapping[str, str]) -> str:
    if method == "GET":
        if query.get("list-type") == "2":
            return "ListObjectsV2"
        special = {"versions": "ListObjectVersions", "uploads": "ListMultipartUploads"}
        for name, operation in special.items():
            if name in query:
                return operation
        return _bucket_subresource("Get", query, "ListObjects")
    if method == "PUT":
        return _bucket_subresource("Put", query, "CreateBucket")
    if method == "DELETE":
        return _bucket_subresource("Delete", query, "DeleteBucket")
    if method == "HEAD":
        return "HeadBucket"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    return method


_BUCKET_SUBRESOURCES = {
    "notification": "BucketNotificationConfiguration",
    "versioning": "BucketVersioning",
    "location": "BucketLocation",
    "policy": "BucketPolicy",
    "tagging": "BucketTagging",
    "lifecycle": "BucketLifecycleConfiguration",
    "encryption": "BucketEncryption",
    "cors": "BucketCors",
    "acl": "BucketAcl",
}


def _bucket_subresource(verb: str, query: Mapping[str, str], plain: str) -> str:
    for name, noun in _BUCKET_SUBRESOURCES.items():
        if name in query:
            return verb + noun
    return plain


def _subresource(plain: str, query: Mapping[str, str], names: Sequence[str]) -> str:
    for name in names:
        if name in query:
            return plain + "".join(part.capitalize() for part in name.split("-"))
    return plain


# ---------------------------------------------------------------------------------------------
# AWS error responses, in each service's wire protocol.
# ---------------------------------------------------------------------------------------------

# The code botocore must report for "throttled", per service, and (for SQS, whose JSON protocol
# is query-compatible) the JSON shape name that travels in __type.
THROTTLE_CODES: dict[str, tuple[str, str | None]] = {
    "s3": ("SlowDown", None),
    "dynamodb": ("ProvisionedThroughputExceededException", None),
    "sqs": ("RequestThrottled", "ThrottlingException"),
    "sns": ("Throttling", None),
}
INTERNAL_CODES = {"dynamodb": "InternalServerError"}  # everyone else says InternalError

_JSON_NAMESPACES = {"dynamodb": "com.amazonaws.dynamodb.v20120810", "sqs": "com.amazonaws.sqs"}
_QUERY_COMPATIBLE = frozenset({"sqs"})  # JSON services that also send x-amzn-query-error
_QUERY_XMLNS = {
    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
    "sqs": "http://queue.amazonaws.com/doc/2012-11-05/",
}
_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "ProvisionedThroughputExceededException": (
        "The level of configured provisioned throughput for the table was exceeded."
        " Consider increasing your provisioning level with the UpdateTable API."
    ),
    "ThrottlingException": "Rate of requests exceeds the allowed throughput.",
    "RequestThrottled": "Request is throttled.",
    "Throttling": "Rate exceeded",
    "InternalError": "We encountered an internal error. Please try again.",
    "InternalServerError": "Internal server error",
    "ServiceUnavailable": "Service is unable to handle request.",
}


def default_status(code: str) -> int:
    if code in {"SlowDown", "ServiceUnavailable"}:
        return 503
    if "Internal" in code:
        return 500
    return 400


@dataclass(frozen=True)
class ErrorReply:
    status: int
    headers: dict[str, str]
    body: bytes


def error_reply(
    info: RequestInfo,
    code: str,
    *,
    status: int | None = None,
    json_type: str | None = None,
    message: str | None = None,
) -> ErrorReply:
    """An error response as the service would send it, so botocore reports ``code``."""
    status = status or default_status(code)
    message = message or _MESSAGES.get(code, f"{code} (injected by the fault proxy)")
    request_id = uuid.uuid4().hex.upper()
    if info.protocol == "json":
        return _json_error(info.service, code, status, json_type or code, message, request_id)
    if info.protocol == "rest-xml":
        return _s3_error(info.method, code, status, message, request_id)
    if info.protocol == "query":
        return _query_error(info.service, code, status, message, request_id)
    body = json.dumps({"__type": code, "message": message}).encode()
    return ErrorReply(status, {"Content-Type": "application/json"}, body)


def _json_error(
    service: str, code: str, status: int, json_type: str, message: str, request_id: str
) -> ErrorReply:
    namespace = _JSON_NAMESPACES.get(service, f"com.amazonaws.{service}")
    body = json.dumps({"__type": f"{namespace}#{json_type}", "message": message}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": request_id}
    if service in _QUERY_COMPATIBLE:
        # botocore reports the first part as the error code (QueryErrorCode is the JSON one).
        headers["x-amzn-query-error"] = f"{code};{'Sender' if status < 500 else 'Receiver'}"
    if service == "dynamodb":
        headers["x-amz-crc32"] = str(zlib.crc32(body) & 0xFFFFFFFF)
    return ErrorReply(status, headers, body)


def _s3_error(method: str, code: str, status: int, message: str, request_id: str) -> ErrorReply:
    host_id = uuid.uuid4().hex
    headers = {"x-amz-request-id": request_id, "x-amz-id-2": host_id}
    if method == "HEAD":  # S3 answers HEAD with a status line only; botocore reports the status
        return ErrorReply(status, headers, b"")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId></Error>"
    ).encode()
    return ErrorReply(status, {**headers, "Content-Type": "application/xml"}, body)


def _query_error(service: str, code: str, status: int, message: str, request_id: str) -> ErrorReply:
    xmlns = _QUERY_XMLNS.get(service, f"http://{service}.amazonaws.com/doc/")
    fault = "Sender" if status < 500 else "Receiver"
    body = (
        f'<ErrorResponse xmlns="{xmlns}"><Error><Type>{fault}</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return ErrorReply(status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body)


# ---------------------------------------------------------------------------------------------
# Rules and counters.
# ---------------------------------------------------------------------------------------------


@dataclass
class Rule:
    """One fault: which requests it matches, what it does, and when it fires.

    A rule fires for a matching request with ``probability``, for at most ``count`` requests
    (None: no limit) and until ``duration_s`` after it was added (None: until removed). Every
    firing ``delay`` rule adds its ``delay_s``; of the other rules the first one that fires
    decides the request's fate, after the delays.
    """

    action: Action
    service: str | None = None
    operation: str | None = None  # "UpdateItem" or "DynamoDB_20120810.UpdateItem"
    method: str | None = None
    path_regex: str | None = None
    body_contains: str | None = None
    body_excludes: str | None = None
    probability: float = 1.0
    count: int | None = None
    duration_s: float | None = None
    delay_s: float = 0.0  # delay: latency added
    hold_s: float | None = None  # blackhole: longest a request is held (None: until cleared)
    code: str | None = None  # error: the code the client must see
    status: int | None = None  # error: HTTP status (default from the code)
    json_type: str | None = None  # error: JSON shape name when it differs from the code (SQS)
    message: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    fired: int = 0
    expires_at: float | None = None  # monotonic, set when the rule is added

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {', '.join(ACTIONS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if self.action == "error" and not self.code:
            raise ValueError("an error rule needs a code")
        if self.action == "delay" and self.delay_s <= 0:
            raise ValueError("a delay rule needs delay_s > 0")
        if self.path_regex is not None:
            re.compile(self.path_regex)

    @property
    def kind(self) -> str:
        """How injections of this rule are counted: the action, or error:<code>."""
        return f"error:{self.code}" if self.action == "error" else self.action

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def matches(self, info: RequestInfo, body: bytes) -> bool:
        if self.service is not None and self.service != info.service:
            return False
        if self.operation is not None and self.operation.rsplit(".", 1)[-1] != info.operation:
            return False
        if self.method is not None and self.method.upper() != info.method:
            return False
        if self.path_regex is not None and not re.search(self.path_regex, info.path):
            return False
        if self.body_contains is not None and self.body_contains.encode() not in body:
            return False
        return self.body_excludes is None or self.body_excludes.encode() not in body

    _SETTABLE = (
        "action",
        "service",
        "operation",
        "method",
        "path_regex",
        "body_contains",
        "body_excludes",
        "probability",
        "count",
        "duration_s",
        "delay_s",
        "hold_s",
        "code",
        "status",
        "json_type",
        "message",
    )

    def to_json(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in (*self._SETTABLE, "id", "fired")}
        return {name: value for name, value in values.items() if value is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rule:
        """A rule from JSON; ``{"action": "throttle" | "internal_error", "service": ...}`` too."""
        values = dict(data)
        values.pop("id", None)
        values.pop("fired", None)
        unknown = set(values) - set(cls._SETTABLE)
        if unknown:
            raise ValueError(f"unknown rule fields: {', '.join(sorted(unknown))}")
        action = values.get("action")
        if action in {"throttle", "internal_error"}:
            service = values.pop("service", None)
            if not isinstance(service, str):
                raise ValueError(f"{action} needs a service")
            values.pop("action")
            if action == "throttle":
                return throttle(service, **values)
            return internal_error(service, **values)
        return cls(**values)


def throttle(service: str, operation: str | None = None, **options: Any) -> Rule:
    """The service's own "slow down" error: SlowDown, ProvisionedThroughputExceeded, ..."""
    code, json_type = THROTTLE_CODES.get(service, ("ThrottlingException", None))
    return Rule(
        action="error",
        service=service,
        operation=operation,
        code=options.pop("code", code),
        json_type=options.pop("json_type", json_type),
        **options,
    )


def internal_error(service: str, operation: str | None = None, **options: Any) -> Rule:
    """A 500 InternalError (DynamoDB: InternalServerError)."""
    code = options.pop("code", INTERNAL_CODES.get(service, "InternalError"))
    return Rule(action="error", service=service, operation=operation, code=code, **options)


@dataclass
class Stats:
    """What went through the proxy: forwarded requests and injected faults, by operation."""

    forwarded: dict[str, int] = field(default_factory=dict)  # "s3.GetObject" -> n
    injected: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> operation -> n
    refusals: int = 0  # times the listener was closed
    refusing: bool = False
    held: int = 0  # requests blackholed right now
    lost_answers: dict[str, int] = field(default_factory=dict)  # applied, answer cut: by op

    def forwarded_count(self, operation: str | None = None) -> int:
        return sum(n for name, n in self.forwarded.items() if _op_matches(name, operation))

    def injected_count(self, kind: str | None = None, operation: str | None = None) -> int:
        """Injections of ``kind`` ("reset", "error:SlowDown", or "error" for any error)."""
        return sum(
            n
            for name, per_operation in self.injected.items()
            if kind is None or name == kind or name.startswith(f"{kind}:")
            for op, n in per_operation.items()
            if _op_matches(op, operation)
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stats:
        return cls(
            forwarded={str(k): int(v) for k, v in data.get("forwarded", {}).items()},
            injected={
                str(kind): {str(k): int(v) for k, v in ops.items()}
                for kind, ops in data.get("injected", {}).items()
            },
            refusals=int(data.get("refusals", 0)),
            refusing=bool(data.get("refusing", False)),
            held=int(data.get("held", 0)),
            lost_answers={str(k): int(v) for k, v in data.get("lost_answers", {}).items()},
        )


@dataclass(frozen=True)
class LostAnswer:
    """A request the upstream answered (so applied) whose answer the client never got."""

    operation: str  # "sns.Publish"
    status: int  # the upstream's status (0 if unknown)
    body: str  # the request body (first 16 KiB), to tell which request it was
    at: float  # wall-clock time

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LostAnswer:
        return cls(
            str(data["operation"]), int(data["status"]), str(data["body"]), float(data["at"])
        )


def _op_matches(name: str, operation: str | None) -> bool:
    """ "s3.GetObject" matches None, "s3" and "s3.GetObject"."""
    return operation is None or name == operation or name.startswith(f"{operation}.")


# ---------------------------------------------------------------------------------------------
# The proxy.
# ---------------------------------------------------------------------------------------------


class FaultProxy:
    """The proxy on the running event loop: ``async with FaultProxy(upstream) as proxy``.

    ``add``, ``remove``, ``clear``, ``stats`` and ``reset_stats`` may be called from any thread;
    ``refuse`` and ``accept`` are coroutines of the proxy's loop.
    """

    def __init__(
        self,
        upstream: str,
        *,
        port: int = 0,
        control_port: int | None = None,
        seed: int | None = None,
        max_hold_s: float = 300.0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self._port = port
        self._control_port = control_port
        self._rng = random.Random(seed)
        self._max_hold_s = max_hold_s
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._forwarded: Counter[str] = Counter()
        self._injected: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._refusals = 0
        self._refusing = False
        self._held = 0
        self._lost: list[LostAnswer] = []
        self._generation = 0  # bumped by clear() and close(): held requests are let go
        self._closing = False
        self._transports: set[asyncio.BaseTransport] = set()
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None
        self._control: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._reopen: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._session = ClientSession(
            connector=TCPConnector(limit=0),
            auto_decompress=False,
            timeout=ClientTimeout(total=None, sock_connect=10, sock_read=600),
        )
        self._runner = web.ServerRunner(
            web.Server(self._handle, access_log=None), shutdown_timeout=1.0
        )
        await self._runner.setup()
        await self._listen()
        if self._control_port is not None:
            self._control = web.AppRunner(self._control_app(), access_log=None)
            await self._control.setup()
            site = web.TCPSite(self._control, LOOPBACK, self._control_port, reuse_address=True)
            await site.start()
            self._control_port = _bound_port(self._control)

    async def close(self) -> None:
        self._closing = True
        self._generation += 1
        if self._reopen is not None:
            self._reopen.cancel()
        if self._control is not None:
            await self._control.cleanup()
        self._abort_all()
        if self._runner is not None:
            await self._runner.cleanup()
        for task in list(self._background):
            task.cancel()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def control_url(self) -> str | None:
        return None if self._control_port is None else f"http://{LOOPBACK}:{self._control_port}"

    # -- control ---------------------------------------------------------------------------------

    def add(self, rule: Rule) -> str:
        """Add a rule (it applies from the next request); return its id."""
        if rule.duration_s is not None:
            rule.expires_at = time.monotonic() + rule.duration_s
        with self._lock:
            self._rules.append(rule)
        return rule.id

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            kept = [rule for rule in self._rules if rule.id != rule_id]
            found = len(kept) != len(self._rules)
            self._rules = kept
        return found

    def clear(self) -> None:
        """Remove every rule and let blackholed requests go (their connections are reset)."""
        with self._lock:
            self._rules = []
            self._generation += 1

    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    def stats(self) -> Stats:
        with self._lock:
            return Stats(
                forwarded=dict(self._forwarded),
                injected={kind: dict(ops) for kind, ops in self._injected.items()},
                refusals=self._refusals,
                refusing=self._refusing,
                held=self._held,
                lost_answers=dict(Counter(lost.operation for lost in self._lost)),
            )

    def reset_stats(self) -> None:
        with self._lock:
            self._forwarded.clear()
            self._injected.clear()
            self._refusals = 0
            self._lost.clear()

    async def refuse(self, duration_s: float | None = None) -> None:
        """Close the listening socket and abort open connections; reopen after ``duration_s``."""
        self._cancel_reopen()
        if not self._refusing:
            self._refusing = True
            with self._lock:
                self._refusals += 1
            if self._site is not None:
                await self._site.stop()
                self._site = None
            self._abort_all()
        if duration_s is not None:
            loop = asyncio.get_running_loop()
            self._reopen = loop.call_later(duration_s, self._spawn_accept)

    async def accept(self) -> None:
        """Listen again after ``refuse``."""
        self._cancel_reopen()
        if self._refusing and not self._closing:
            await self._listen()
            self._refusing = False

    def _spawn_accept(self) -> None:
        task = asyncio.get_running_loop().create_task(self.accept())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _cancel_reopen(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None

    async def _listen(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, LOOPBACK, self._port, reuse_address=True)
        await site.start()
        self._site = site
        if not self._port:
            self._port = _bound_port(self._runner)

    def _abort_all(self) -> None:
        for transport in list(self._transports):
            _abort_transport(transport)
        self._transports.clear()

    # -- the data path -------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            self._transports = {t for t in self._transports if not t.is_closing()}
            self._transports.add(transport)
        if self._refusing:  # a kept-alive connection that outlived the listener
            _abort(request)
            return web.Response(status=502)
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await request.content.read()
        info = classify(request.method, request.raw_path, request.headers, body)
        delay_s, rule = self._decide(info, body)
        if delay_s:
            await asyncio.sleep(delay_s)
        if rule is None:
            return await self._forward(request, body, info)
        if rule.action == "reset":
            _abort(request)
            return web.Response(status=502)
        if rule.action == "blackhole":
            await self._hold(request, rule)
            return web.Response(status=504)
        if rule.action == "reset_after":
            await self._forward(request, body, info, deliver=False)
            _abort(request)
            return web.Response(status=502)
        assert rule.code is not None
        reply = error_reply(
            info, rule.code, status=rule.status, json_type=rule.json_type, message=rule.message
        )
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)

    def _decide(self, info: RequestInfo, body: bytes) -> tuple[float, Rule | None]:
        """Total delay of the firing delay rules, and the first other rule that fires."""
        now = time.monotonic()
        delay_s = 0.0
        chosen: Rule | None = None
        with self._lock:
            for rule in self._rules:
                if rule.expired(now) or rule.exhausted or not rule.matches(info, body):
                    continue
                if rule.action != "delay" and chosen is not None:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                self._injected[rule.kind][info.name] += 1
                if rule.action == "delay":
                    delay_s += rule.delay_s
                else:
                    chosen = rule
            self._rules = [r for r in self._rules if not (r.expired(now) or r.exhausted)]
        return delay_s, chosen

    async def _forward(
        self, request: web.BaseRequest, body: bytes, info: RequestInfo, *, deliver: bool = True
    ) -> web.StreamResponse:
        assert self._session is not None
        headers: CIMultiDict[str] = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _HOP_BY_HOP
        )
        url = URL(self.upstream + request.raw_path, encoded=True)
        response: web.StreamResponse | None = None
        answered = False
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
            ) as upstream:
                # Counted once upstream answered, before the client can see the answer.
                self._count_forwarded(info)
                answered = True
                if not deliver:
                    await upstream.read()
                    self._record_lost(info, upstream.status, body)
                    return web.Response(status=502)
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        response.headers.add(name, value)
                length = upstream.headers.get("Content-Length")
                if length is not None:
                    response.content_length = int(length)
                await response.prepare(request)
                if request.method != "HEAD":
                    async for chunk in upstream.content.iter_chunked(_CHUNK_BYTES):
                        await response.write(chunk)
                await response.write_eof()
        except (ClientError, TimeoutError, ConnectionError) as error:
            if not answered:  # the upstream failed before answering: a bad gateway
                return web.Response(status=502, text=f"fault proxy: upstream failed: {error}")
            if _client_gone(request):  # applied upstream; the answer never reached the client
                self._record_lost(info, response.status if response else 0, body)
            else:  # the upstream failed mid-body: the client must not take a short body
                _abort(request)
            return response or web.Response(status=502)
        return response

    def _count_forwarded(self, info: RequestInfo) -> None:
        with self._lock:
            self._forwarded[info.name] += 1

    def _record_lost(self, info: RequestInfo, status: int, body: bytes) -> None:
        lost = LostAnswer(
            info.name, status, body[:_LOST_BODY_BYTES].decode("utf-8", "replace"), time.time()
        )
        with self._lock:
            self._lost.append(lost)
            del self._lost[:-_LOST_KEPT]

    def lost_answers(self) -> list[LostAnswer]:
        """Requests the upstream applied whose answer never reached the client (newest last)."""
        with self._lock:
            return list(self._lost)

    async def _hold(self, request: web.BaseRequest, rule: Rule) -> None:
        """Answer nothing until the client gives up, the rules are cleared or hold_s passes."""
        generation = self._generation
        deadline = time.monotonic() + (rule.hold_s or self._max_hold_s)
        with self._lock:
            self._held += 1
        try:
            while time.monotonic() < deadline and generation == self._generation:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return
                await asyncio.sleep(_POLL_S)
        finally:
            with self._lock:
                self._held -= 1
        _abort(request)

    # -- the control endpoint --------------------------------------------------------------------

    def _control_app(self) -> web.Application:
        routes = web.RouteTableDef()

        @routes.get("/health")
        async def health(_: web.Request) -> web.Response:
            return web.json_response({"ok": True, "url": self.url, "refusing": self._refusing})

        @routes.get("/stats")
        async def stats(_: web.Request) -> web.Response:
            return web.json_response(self.stats().to_json())

        @routes.get("/lost")
        async def lost(_: web.Request) -> web.Response:
            return web.json_response([answer.to_json() for answer in self.lost_answers()])

        @routes.post("/stats/reset")
        async def reset_stats(_: web.Request) -> web.Response:
            self.reset_stats()
            return web.json_response({"ok": True})

        @routes.get("/rules")
        async def list_rules(_: web.Request) -> web.Response:
            return web.json_response([rule.to_json() for rule in self.rules()])

        @routes.post("/rules")
        async def add_rule(request: web.Request) -> web.Response:
            try:
                rule = Rule.from_json(_json_object(await request.json()))
            except (ValueError, TypeError) as error:
                return web.json_response({"error": str(error)}, status=400)
            return web.json_response({"id": self.add(rule)})

        @routes.delete("/rules")
        async def clear_rules(_: web.Request) -> web.Response:
            self.clear()
            return web.json_response({"ok": True})

        @routes.delete("/rules/{rule_id}")
        async def remove_rule(request: web.Request) -> web.Response:
            found = self.remove(request.match_info["rule_id"])
            return web.json_response({"removed": found}, status=200 if found else 404)

        @routes.post("/refuse")
        async def refuse(request: web.Request) -> web.Response:
            data = await request.json() if request.can_read_body else {}
            duration = data.get("duration_s") if isinstance(data, dict) else None
            await self.refuse(None if duration is None else float(duration))
            return web.json_response({"ok": True})

        @routes.post("/accept")
        async def accept(_: web.Request) -> web.Response:
            await self.accept()
            return web.json_response({"ok": True})

        app = web.Application()
        app.add_routes(routes)
        return app


def _json_object(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError("a rule is a JSON object")
    return data


def _bound_port(runner: web.BaseRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("not listening")


def _client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _abort(request: web.BaseRequest) -> None:
    if request.transport is not None:
        _abort_transport(request.transport)


def _abort_transport(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP RST (linger 0), not a FIN: the peer sees "connection reset"."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.Transport | asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


# ---------------------------------------------------------------------------------------------
# Synchronous handles: a thread with its own loop, the control endpoint, a process.
# ---------------------------------------------------------------------------------------------


class FaultControl(Protocol):
    """What synchronous test code needs from a running proxy, wherever it runs."""

    @property
    def url(self) -> str: ...

    def add(self, rule: Rule) -> str: ...

    def remove(self, rule_id: str) -> bool: ...

    def clear(self) -> None: ...

    def refuse(self, duration_s: float | None = None) -> None: ...

    def accept(self) -> None: ...

    def stats(self) -> Stats: ...

    def reset_stats(self) -> None: ...

    def lost_answers(self) -> list[LostAnswer]: ...


class ThreadedFaultProxy:
    """A FaultProxy on its own event loop in a daemon thread: ``with ThreadedFaultProxy(up)``."""

    def __init__(
        self,
        upstream: str,
        *,
        port: int = 0,
        control_port: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.proxy = FaultProxy(upstream, port=port, control_port=control_port, seed=seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )

    def start(self) -> Self:
        self._thread.start()
        self._call(self.proxy.start())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self.proxy.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, coroutine: Any, timeout_s: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def control_url(self) -> str | None:
        return self.proxy.control_url

    def add(self, rule: Rule) -> str:
        return self.proxy.add(rule)

    def remove(self, rule_id: str) -> bool:
        return self.proxy.remove(rule_id)

    def clear(self) -> None:
        self.proxy.clear()

    def refuse(self, duration_s: float | None = None) -> None:
        self._call(self.proxy.refuse(duration_s))

    def accept(self) -> None:
        self._call(self.proxy.accept())

    def stats(self) -> Stats:
        return self.proxy.stats()

    def reset_stats(self) -> None:
        self.proxy.reset_stats()

    def lost_answers(self) -> list[LostAnswer]:
        return self.proxy.lost_answers()


class ProxyClient:
    """Drives a proxy through its JSON control endpoint (for one in another process)."""

    def __init__(self, url: str, control_url: str, timeout_s: float = 10) -> None:
        self._url = url
        self.control_url = control_url.rstrip("/")
        self._timeout_s = timeout_s

    @property
    def url(self) -> str:
        return self._url

    def _call(self, method: str, path: str, payload: object | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.control_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return json.loads(error.read() or b"null")
            raise RuntimeError(f"{method} {path}: {error.code} {error.read()!r}") from error

    def health(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/health"))

    def add(self, rule: Rule) -> str:
        return str(self._call("POST", "/rules", rule.to_json())["id"])

    def add_json(self, rule: Mapping[str, Any]) -> str:
        return str(self._call("POST", "/rules", dict(rule))["id"])

    def remove(self, rule_id: str) -> bool:
        return bool(self._call("DELETE", f"/rules/{rule_id}")["removed"])

    def clear(self) -> None:
        self._call("DELETE", "/rules")

    def rules(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "/rules"))

    def refuse(self, duration_s: float | None = None) -> None:
        self._call("POST", "/refuse", {"duration_s": duration_s})

    def accept(self) -> None:
        self._call("POST", "/accept", {})

    def stats(self) -> Stats:
        return Stats.from_json(self._call("GET", "/stats"))

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset", {})

    def lost_answers(self) -> list[LostAnswer]:
        return [LostAnswer.from_json(item) for item in self._call("GET", "/lost")]


class ProxyProcess(ProxyClient):
    """``python -m tests.faults.proxy`` as a child process, driven through its control port."""

    def __init__(
        self,
        upstream: str,
        *,
        port: int | None = None,
        control_port: int | None = None,
        seed: int | None = None,
        log: IO[bytes] | None = None,
    ) -> None:
        self._ports = (port or free_port(), control_port or free_port())
        super().__init__(
            f"http://{LOOPBACK}:{self._ports[0]}", f"http://{LOOPBACK}:{self._ports[1]}"
        )
        self._upstream = upstream
        self._seed = seed
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> Self:
        command = [
            sys.executable,
            "-m",
            "tests.faults.proxy",
            "--upstream",
            self._upstream,
            "--port",
            str(self._ports[0]),
            "--control-port",
            str(self._ports[1]),
        ]
        if self._seed is not None:
            command += ["--seed", str(self._seed)]
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": path},
            stdout=subprocess.DEVNULL,
            stderr=self._log if self._log is not None else subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the proxy exited with {self.process.returncode}")
            try:
                self.health()
            except (OSError, RuntimeError):
                time.sleep(0.1)
            else:
                return self
        self.close()
        raise RuntimeError("the proxy process never answered on its control port")

    def close(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# python -m tests.faults.proxy
# ---------------------------------------------------------------------------------------------


async def serve(upstream: str, port: int, control_port: int, seed: int | None) -> None:
    """Run until SIGTERM or SIGINT; print one JSON line with the addresses once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with FaultProxy(upstream, port=port, control_port=control_port, seed=seed) as proxy:
        print(json.dumps({"proxy": proxy.url, "control": proxy.control_url}), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.proxy", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--upstream", required=True, help="endpoint to forward to")
    parser.add_argument("--port", type=int, default=0, help="proxy port on 127.0.0.1")
    parser.add_argument("--control-port", type=int, default=0, help="control port on 127.0.0.1")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault dice")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.upstream, args.port, args.control_port, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

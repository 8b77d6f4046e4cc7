"""The chaos runner: daemons killed, restarted and faulted while uploads flow; then an audit.

One run:

1. start the emulator (unless given one), provision a fresh stack on it, start the fault proxy
   in front of it and K daemon processes pointed at the proxy;
2. for ``duration_s``: upload the files directly to the emulator (spread over most of the
   window), SIGKILL ``kills`` daemons at random moments (busy ones first) and start a
   replacement for each, and in between, at random: SIGTERM a daemon and restart it, throttle
   one service, reset connections, add latency, hold requests unanswered, or refuse connections;
3. stop injecting, let the daemons finish (bounded), SIGTERM them all;
4. audit, from the emulator directly: ledger, notifications on the watch queue, artifacts under
   the output prefix, what is left on the main queue and in the dead-letter queue.

On Google Cloud (``run_gcp_chaos``) a run is the same on the embedded GCP stack (the Pub/Sub,
Firestore and Cloud Storage emulators), with other faults:

- no network faults: the fault proxy speaks HTTP to AWS's APIs, while Pub/Sub and Firestore
  are gRPC. Only SIGKILLs (each followed by a replacement), SIGTERM and restart, and duplicate
  notifications: copies (data and attributes) of real Cloud Storage notifications, taken from
  a second subscription of the bucket's topic and published onto it again, as Cloud Storage's
  at-least-once delivery may;
- the subscription has no retry policy (with one, the emulator stops redelivering a message
  after its third lease expiry) and the least ack deadline Pub/Sub allows, 10 s: a daemon
  killed between a pull and the deadline change that follows leaves its messages leased for
  that long;
- artifacts are expected under each object's generation, and the audit reads what is left on
  the subscriptions by pulling them once the leases of killed daemons have run out.

Used by ``tests/chaos/test_chaos_short.py`` and ``tests/chaos/test_chaos_gcp_short.py`` (short
forms, in ``make test``) and by ``bench/chaos.py`` (long forms).
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus

from google.pubsub_v1 import types as pubsub

from pipelined.gcp.local import GcpStack, gcp_stack
from pipelined.layout import artifact_prefix
from pipelined.local import LocalStack, emulator, provision
from tests.faults.daemon import (
    Daemon,
    Notification,
    Upload,
    Watcher,
    ledger,
    make_uploads,
    object_keys,
)
from tests.faults.proxy import (
    FaultControl,
    ProxyProcess,
    Rule,
    ThreadedFaultProxy,
    internal_error,
    throttle,
)
from tests.gcp.helpers import (
    GcpDaemon,
    GcpWatcher,
    backlog,
    drain_tap,
    object_ids,
    object_names,
    republish,
    subscriber_of,
    tap,
)
from tests.gcp.helpers import ledger as gcp_ledger
from tests.integration.helpers import queue_counts

OUTPUT_PREFIX = "pipelined/"
THUMBNAIL_NAMES = ("thumb-256.webp", "thumb-1024.webp")  # the daemon's default sizes and format
PDF_NAMES = ("text.txt", "preview-1024.webp")
SERVICES = ("s3", "dynamodb", "sqs", "sns")

# Relative weights of the faults injected between the kills.
FAULT_WEIGHTS: dict[str, float] = {
    "term": 1.0,
    "throttle": 3.0,
    "internal": 1.0,
    "reset": 1.5,
    "delay": 1.5,
    "blackhole": 0.5,
    "refuse": 1.0,
}
# On Google Cloud: no network faults (see the module's docstring).
GCP_FAULT_WEIGHTS: dict[str, float] = {"term": 1.0, "duplicate": 2.0}
DUPLICATES_AT_ONCE = 3  # the most copies one duplicate fault publishes
RECENT_ORIGINALS = 3  # what counts as the latest uploads' notifications, to copy
GCP_ACK_DEADLINE_S = 10  # the subscription's own: the least Pub/Sub allows


@dataclass(frozen=True)
class ChaosConfig:
    files: int = 30
    kills: int = 3
    duration_s: float = 45.0
    daemons: int = 3
    seed: int = 1
    finish_timeout_s: float = 60.0
    fault_gap_s: float = 3.0  # mean time between two injected faults (besides the kills)
    corrupt_every: int = 10  # every n-th upload is a corrupt JPEG that must end "failed"
    proxy: Literal["process", "thread"] = "process"
    log_dir: Path | None = None  # daemon logs; a temporary directory when None
    faults: tuple[str, ...] = tuple(FAULT_WEIGHTS)
    settings: tuple[tuple[str, str], ...] = ()  # extra PIPELINED_* settings for the daemons


@dataclass
class ChaosReport:
    config: ChaosConfig
    backend: Literal["aws", "gcp"] = "aws"
    uploaded: int = 0
    processed: int = 0
    failed_as_expected: int = 0
    wrong_outcome: int = 0  # terminal, but not the expected status
    lost: int = 0  # no terminal status and no message left anywhere
    unnotified: int = 0  # terminal, but no notification ever arrived
    unfinished: int = 0  # no terminal status, but a message is still queued or dead-lettered
    dup_notifications_resent: int = 0  # extra notifications re-sending the same record
    dup_notifications_reprocessed: int = 0  # extra notifications from a second processing
    unexpected_notifications: int = 0  # for keys that were never uploaded
    dup_artifacts: int = 0  # artifact keys outside the deterministic expected set
    missing_artifacts: int = 0
    dead_lettered: int = 0
    duplicates_published: int = 0  # copies of real notifications published again (GCP)
    left_visible: int = 0
    left_in_flight: int = 0
    kills: int = 0
    terms: int = 0
    unclean_exits: int = 0  # a SIGTERMed daemon that did not exit 0
    unexpected_exits: int = 0  # a daemon that died without being killed
    term_exit_s: list[float] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    injected: dict[str, int] = field(default_factory=dict)  # proxy counters by kind
    forwarded: int = 0
    lost_answers: dict[str, int] = field(default_factory=dict)  # applied upstream, answer cut
    resend_causes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # one line per problem key
    chaos_s: float = 0.0
    finish_s: float = 0.0
    total_s: float = 0.0
    log_dir: str = ""

    FAILING = (
        "lost",
        "unnotified",
        "wrong_outcome",
        "unfinished",
        "dup_notifications_resent",
        "dup_notifications_reprocessed",
        "unexpected_notifications",
        "dup_artifacts",
    )

    @property
    def ok(self) -> bool:
        return not any(getattr(self, name) for name in self.FAILING)

    @property
    def failures_besides_resends(self) -> list[str]:
        """The failing columns, leaving out re-sends of an already notified record (the
        at-least-once windows of docs/reliability.md); every other column must stay 0."""
        return [
            name
            for name in self.FAILING
            if name != "dup_notifications_resent" and getattr(self, name)
        ]

    def rows(self) -> list[tuple[str, str]]:
        c = self.config
        return [
            ("uploaded", str(self.uploaded)),
            ("processed (ledger status processed)", str(self.processed)),
            ("failed as expected (corrupt input)", str(self.failed_as_expected)),
            ("wrong outcome", str(self.wrong_outcome)),
            ("lost", str(self.lost)),
            ("terminal but never notified", str(self.unnotified)),
            ("unfinished (message still queued or in the DLQ)", str(self.unfinished)),
            ("duplicate notifications: same record re-sent", str(self.dup_notifications_resent)),
            ("duplicate notifications: processed again", str(self.dup_notifications_reprocessed)),
            ("notifications for keys never uploaded", str(self.unexpected_notifications)),
            ("duplicate artifacts (keys outside the expected set)", str(self.dup_artifacts)),
            ("missing artifacts", str(self.missing_artifacts)),
            ("left in the DLQ", str(self.dead_lettered)),
            *self._left_on_the_queue(),
            ("daemons (K)", str(c.daemons)),
            ("SIGKILLs (each followed by a replacement)", str(self.kills)),
            ("SIGTERM + restart", str(self.terms)),
            ("SIGTERMed daemons that did not exit 0 within 30 s", str(self.unclean_exits)),
            ("SIGTERM to exit, median / max",
             f"{median(self.term_exit_s):.1f} s / {max(self.term_exit_s):.1f} s"
             if self.term_exit_s else "-"),
            ("daemons that died on their own", str(self.unexpected_exits)),
            ("fault windows", _counts(self.faults)),
            *self._injected(),
            ("causes of re-sent notifications", _counts(self.resend_causes) or "-"),
            ("chaos / finish / total time",
             f"{self.chaos_s:.0f} s / {self.finish_s:.0f} s / {self.total_s:.0f} s"),
        ]  # fmt: skip

    def _left_on_the_queue(self) -> list[tuple[str, str]]:
        if self.backend == "gcp":
            # Pulled once every lease had run out: nothing can be in flight any more.
            return [("left on the subscription", str(self.left_visible))]
        return [
            ("left on the main queue (visible / in flight)",
             f"{self.left_visible} / {self.left_in_flight}"),
        ]  # fmt: skip

    def _injected(self) -> list[tuple[str, str]]:
        """What was injected besides signals: requests faulted by the proxy (AWS), or copies
        of notifications (GCP)."""
        if self.backend == "gcp":
            return [("duplicate notifications published", str(self.duplicates_published))]
        return [
            ("requests forwarded / faulted by the proxy",
             f"{self.forwarded} / {sum(self.injected.values())}"),
            ("faulted requests by kind", _counts(Counter(self.injected))),
            ("requests applied upstream whose answer was cut",
             _counts(Counter(self.lost_answers)) or "-"),
        ]  # fmt: skip

    def table(self) -> str:
        rows = self.rows()
        width = max(len(name) for name, _ in rows)
        lines = [f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
        verdict = (
            "PASS"
            if self.ok
            else "FAIL: " + ", ".join(name for name in self.FAILING if getattr(self, name))
        )
        return "\n".join([*lines, "", verdict, *self.problems[:40]])


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items()))


# ---------------------------------------------------------------------------------------------
# The fleet of daemons.
# ---------------------------------------------------------------------------------------------


class Fleet:
    """K daemon slots; each slot holds the current incarnation of a daemon, made by
    ``launch`` (given the path of its log) and started here."""

    def __init__(self, launch: Callable[[Path], Daemon], log_dir: Path, size: int) -> None:
        self.launch, self.log_dir = launch, log_dir
        self.slots: list[Daemon | None] = [None] * size
        self.terminating: list[tuple[int, Daemon, float]] = []  # slot, daemon, since
        self.all: list[Daemon] = []
        self.killed: set[int] = set()  # pids we SIGKILLed
        self.termed: set[int] = set()
        self.unclean_exits = 0
        self.unexpected_exits = 0
        self.term_exit_s: list[float] = []  # SIGTERM to exit, per restarted daemon
        self.kill_times: list[float] = []  # wall clock of each SIGKILL
        self.refusals: list[tuple[float, float]] = []  # wall clock of each refusal window

    def start(self, slot: int) -> Daemon:
        name = f"daemon-{len(self.all) + 1:03d}-slot{slot}.log"
        daemon = self.launch(self.log_dir / name)
        daemon.start()
        self.slots[slot] = daemon
        self.all.append(daemon)
        return daemon

    def start_all(self) -> None:
        for slot in range(len(self.slots)):
            self.start(slot)
        for daemon in self.running():
            daemon.wait_ready(timeout_s=60)

    def running(self) -> list[Daemon]:
        return [d for d in self.slots if d is not None and d.alive]

    def kill(self, rng: random.Random) -> tuple[Daemon, Daemon] | None:
        """SIGKILL a daemon (one with work in flight if there is one); start a replacement."""
        draining = {slot for slot, _, _ in self.terminating}
        candidates = [
            (slot, d)
            for slot, d in enumerate(self.slots)
            if d is not None and d.alive and slot not in draining
        ]
        if not candidates:
            return None
        busy = [(s, d) for s, d in candidates if (d.metric("pipelined_in_flight_messages") or 0)]
        slot, victim = rng.choice(busy or candidates)
        self.killed.add(victim.pid)
        self.kill_times.append(time.time())
        victim.kill()
        return victim, self.start(slot)

    def term(self, rng: random.Random) -> Daemon | None:
        """SIGTERM a daemon; its slot is restarted once it has drained and exited."""
        busy_slots = {slot for slot, _, _ in self.terminating}
        candidates = [
            (slot, d)
            for slot, d in enumerate(self.slots)
            if d is not None and d.alive and slot not in busy_slots
        ]
        if len(candidates) <= 1:  # keep at least one consumer
            return None
        # Only a ready daemon: one still starting has no signal handlers yet and simply dies
        # of the SIGTERM (exit -15), which tests no drain.
        candidates = [(slot, d) for slot, d in candidates if d.http_status("/readyz") == 200]
        if not candidates:
            return None
        slot, victim = rng.choice(candidates)
        assert victim.process is not None
        self.termed.add(victim.pid)
        victim.process.send_signal(signal.SIGTERM)
        self.terminating.append((slot, victim, time.monotonic()))
        return victim

    def tend(self) -> list[str]:
        """Restart drained daemons and any that died on their own; return what happened."""
        events = []
        still = []
        for slot, daemon, since in self.terminating:
            assert daemon.process is not None
            code = daemon.process.poll()
            if code is None and time.monotonic() - since > 30:
                daemon.kill()
                code = -9
            if code is None:
                still.append((slot, daemon, since))
                continue
            self.term_exit_s.append(time.monotonic() - since)
            if code != 0:
                self.unclean_exits += 1
                events.append(f"daemon pid {daemon.pid} exited {code} after SIGTERM")
            events.append(f"restart slot {slot} (pid {self.start(slot).pid})")
        self.terminating = still
        terminating = {slot for slot, _, _ in self.terminating}
        for slot, current in enumerate(self.slots):
            if current is None or slot in terminating or current.alive:
                continue
            if current.pid not in self.killed:
                self.unexpected_exits += 1
                events.append(f"daemon pid {current.pid} died: {current.log_tail(3)}")
                self.start(slot)
        return events

    def stop_all(self, timeout_s: float = 30) -> None:
        for daemon in self.all:
            if daemon.alive:
                assert daemon.process is not None
                daemon.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for daemon in self.all:
            if daemon.process is None:
                continue
            try:
                daemon.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # past the deadline: make sure it is gone
                daemon.kill()


# ---------------------------------------------------------------------------------------------
# Faults.
# ---------------------------------------------------------------------------------------------


def inject(kind: str, proxy: FaultControl, fleet: Fleet, rng: random.Random) -> str | None:
    """Inject one fault window; return a description, or None if it could not be applied."""
    window = round(rng.uniform(2.0, 6.0), 1)
    if kind == "term":
        victim = fleet.term(rng)
        return None if victim is None else f"SIGTERM pid {victim.pid}"
    if kind == "throttle":
        service = rng.choice(SERVICES)
        probability = round(rng.uniform(0.3, 0.8), 2)
        proxy.add(throttle(service, probability=probability, duration_s=window))
        return f"throttle {service} p={probability} for {window} s"
    if kind == "internal":
        service = rng.choice(SERVICES)
        proxy.add(internal_error(service, probability=0.3, duration_s=window))
        return f"500 on {service} p=0.3 for {window} s"
    if kind == "reset":
        probability = round(rng.uniform(0.1, 0.3), 2)
        proxy.add(Rule(action="reset", probability=probability, duration_s=window))
        return f"reset p={probability} for {window} s"
    if kind == "delay":
        delay = round(rng.uniform(0.2, 1.5), 2)
        proxy.add(Rule(action="delay", delay_s=delay, probability=0.5, duration_s=window))
        return f"delay {delay} s p=0.5 for {window} s"
    if kind == "blackhole":
        service = rng.choice(SERVICES)
        proxy.add(
            Rule(action="blackhole", service=service, probability=0.3, duration_s=window, hold_s=3)
        )
        return f"blackhole {service} p=0.3 (held 3 s) for {window} s"
    if kind == "refuse":
        outage = round(rng.uniform(1.0, 4.0), 1)
        proxy.refuse(duration_s=outage)
        fleet.refusals.append((time.time(), time.time() + outage))
        return f"refuse connections for {outage} s"
    raise ValueError(f"unknown fault {kind!r}")


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------


def run_chaos(
    config: ChaosConfig,
    emulator_url: str | None = None,
    say: Callable[[str], None] = print,
) -> ChaosReport:
    """One chaos run, start to audit; every phase is bounded in time."""
    rng = random.Random(config.seed)
    report = ChaosReport(config)
    started = time.monotonic()
    with ExitStack() as cleanup:
        if emulator_url is None:
            emulator_url = cleanup.enter_context(emulator())
        stack = provision(emulator_url)
        log_dir = config.log_dir or Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pipelined-chaos-"))
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        report.log_dir = str(log_dir)
        proxy: FaultControl
        if config.proxy == "process":
            proxy_log = cleanup.enter_context((log_dir / "proxy.log").open("wb"))
            proxy = cleanup.enter_context(
                ProxyProcess(emulator_url, seed=config.seed, log=proxy_log)
            )
        else:
            proxy = cleanup.enter_context(ThreadedFaultProxy(emulator_url, seed=config.seed))
        settings = dict(config.settings)
        url = proxy.url

        def launch(log: Path) -> Daemon:
            return Daemon(stack, url, log, **settings)

        fleet = Fleet(launch, log_dir, config.daemons)
        cleanup.callback(fleet.stop_all)
        fleet.start_all()
        say(f"stack {stack.input_bucket}, proxy {proxy.url}, {config.daemons} daemons")
        say(f"daemon logs in {log_dir}")

        uploads = make_uploads(config.files, prefix="chaos/", corrupt_every=config.corrupt_every)
        report.uploaded = len(uploads)
        chaos_started = time.monotonic()
        s3 = stack.client("s3")

        def put(item: Upload) -> None:
            s3.put_object(Bucket=stack.input_bucket, Key=item.key, Body=item.body)

        def inject_fault(kind: str) -> str | None:
            return inject(kind, proxy, fleet, rng)

        _chaos(config, fleet, uploads, put, (FAULT_WEIGHTS, inject_fault), rng, report, say)
        report.chaos_s = time.monotonic() - chaos_started

        proxy.clear()
        proxy.accept()
        finish_started = time.monotonic()
        _finish(config, stack, fleet, uploads, say)
        report.finish_s = time.monotonic() - finish_started
        fleet.stop_all()
        report.kills, report.terms = len(fleet.killed), len(fleet.termed)
        report.unclean_exits, report.unexpected_exits = fleet.unclean_exits, fleet.unexpected_exits
        report.term_exit_s = fleet.term_exit_s
        stats = proxy.stats()
        report.forwarded = stats.forwarded_count()
        report.injected = {kind: sum(ops.values()) for kind, ops in stats.injected.items()}
        report.lost_answers = stats.lost_answers
        _audit(stack, uploads, fleet, report, _cut_publishes(proxy))
    report.total_s = time.monotonic() - started
    return report


Injector = tuple[dict[str, float], Callable[[str], str | None]]
"""The faults a backend can inject, with their weights, and what injects one of them (and
describes it, or says None when it could not be applied)."""


def _chaos(
    config: ChaosConfig,
    fleet: Fleet,
    uploads: list[Upload],
    put: Callable[[Upload], None],
    injector: Injector,
    rng: random.Random,
    report: ChaosReport,
    say: Callable[[str], None],
) -> None:
    """Upload, kill and inject for ``duration_s``; the kills' replacements are the fleet's."""
    fault_weights, inject_fault = injector
    duration = config.duration_s
    start = time.monotonic()
    upload_window = 0.75 * duration
    upload_at = [start + upload_window * i / max(1, len(uploads)) for i in range(len(uploads))]
    kill_at = sorted(start + rng.uniform(0.1, 0.95) * duration for _ in range(config.kills))
    kinds = [k for k in config.faults if k in fault_weights]
    weights = [fault_weights[k] for k in kinds]
    next_fault = start + rng.expovariate(1 / config.fault_gap_s)
    pending = list(zip(upload_at, uploads, strict=True))
    while True:
        now = time.monotonic()
        elapsed = now - start
        while pending and pending[0][0] <= now:
            _, item = pending.pop(0)
            put(item)
        if elapsed >= duration and not pending and not kill_at:
            break
        if kill_at and kill_at[0] <= now:
            kill_at.pop(0)
            killed = fleet.kill(rng)
            if killed is not None:
                say(
                    f"t={elapsed:5.1f} SIGKILL pid {killed[0].pid}, replacement pid {killed[1].pid}"
                )
        if kinds and now >= next_fault and elapsed < duration:
            kind = rng.choices(kinds, weights)[0]
            applied = inject_fault(kind)
            if applied is not None:
                report.faults[kind] += 1
                say(f"t={elapsed:5.1f} {applied}")
            next_fault = now + rng.expovariate(1 / config.fault_gap_s)
        for event in fleet.tend():
            say(f"t={elapsed:5.1f} {event}")
        time.sleep(0.1)


def _finish(
    config: ChaosConfig,
    stack: LocalStack,
    fleet: Fleet,
    uploads: list[Upload],
    say: Callable[[str], None],
) -> None:
    """Let the daemons finish: every upload terminal and the main queue empty, or time out."""
    keys = [u.key for u in uploads]
    deadline = time.monotonic() + config.finish_timeout_s
    while time.monotonic() < deadline:
        fleet.tend()
        items = ledger(stack)
        done = sum(items.get(k, {}).get("status") in {"processed", "failed"} for k in keys)
        if done == len(keys) and queue_counts(stack) == (0, 0):
            return
        time.sleep(0.5)
    say(f"finish: timed out after {config.finish_timeout_s:.0f} s")


# ---------------------------------------------------------------------------------------------
# The run on Google Cloud.
# ---------------------------------------------------------------------------------------------


def run_gcp_chaos(
    config: ChaosConfig,
    java_hosts: tuple[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> ChaosReport:
    """One chaos run on the embedded GCP stack, start to audit; every phase is bounded in time.

    ``java_hosts``: the Pub/Sub and Firestore emulators, already running, as their host:ports;
    else they are started here (EmulatorUnavailableError says why they cannot be).
    """
    rng = random.Random(config.seed)
    report = ChaosReport(config, backend="gcp")
    started = time.monotonic()
    with ExitStack() as cleanup:
        log_dir = config.log_dir or Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pipelined-chaos-"))
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        report.log_dir = str(log_dir)
        stack = cleanup.enter_context(
            gcp_stack(java_hosts=java_hosts, retry_policy=False, log_dir=log_dir)
        )
        _shorten_ack_deadline(stack)
        tapped = tap(stack)
        settings = dict(config.settings)

        def launch(log: Path) -> Daemon:
            return GcpDaemon(stack, log, **settings)

        fleet = Fleet(launch, log_dir, config.daemons)
        cleanup.callback(fleet.stop_all)
        fleet.start_all()
        say(f"stack {stack.input_bucket} on {stack.emulators}, {config.daemons} daemons")
        say(f"daemon and emulator logs in {log_dir}")

        uploads = make_uploads(config.files, prefix="chaos/", corrupt_every=config.corrupt_every)
        report.uploaded = len(uploads)
        bucket = stack.storage_client().bucket(stack.input_bucket)
        generations: dict[str, str] = {}

        def put(item: Upload) -> None:
            blob = bucket.blob(item.key)
            blob.upload_from_string(item.body)
            generations[item.key] = str(blob.generation)

        duplicates = _Duplicates(stack, tapped, {u.key for u in uploads}, rng)

        def inject_fault(kind: str) -> str | None:
            if kind == "term":
                victim = fleet.term(rng)
                return None if victim is None else f"SIGTERM pid {victim.pid}"
            if kind == "duplicate":
                described, published = duplicates.publish()
                report.duplicates_published += published
                return described
            raise ValueError(f"unknown fault {kind!r}")

        chaos_started = time.monotonic()
        injector = (GCP_FAULT_WEIGHTS, inject_fault)
        _chaos(config, fleet, uploads, put, injector, rng, report, say)
        report.chaos_s = time.monotonic() - chaos_started

        finish_started = time.monotonic()
        _gcp_finish(config, stack, fleet, uploads, say)
        report.finish_s = time.monotonic() - finish_started
        fleet.stop_all()
        report.kills, report.terms = len(fleet.killed), len(fleet.termed)
        report.unclean_exits, report.unexpected_exits = fleet.unclean_exits, fleet.unexpected_exits
        report.term_exit_s = fleet.term_exit_s
        _gcp_audit(stack, uploads, generations, fleet, report)
    report.total_s = time.monotonic() - started
    return report


def _shorten_ack_deadline(stack: GcpStack) -> None:
    """Give the subscription the least ack deadline Pub/Sub allows. A pull's messages hold it
    until the daemon sets its own lease, just after: a daemon killed in between leaves them
    leased for that long, and the run must outlast it."""
    with subscriber_of(stack) as client:
        client.update_subscription(
            request=pubsub.UpdateSubscriptionRequest(
                subscription=pubsub.Subscription(
                    name=stack.subscription, ack_deadline_seconds=GCP_ACK_DEADLINE_S
                ),
                update_mask={"paths": ["ack_deadline_seconds"]},
            )
        )


class _Duplicates:
    """Copies of real Cloud Storage notifications of the uploads, published onto the bucket's
    topic again. The originals come from the tap, a subscription of that topic of their own."""

    def __init__(
        self, stack: GcpStack, tapped: str, uploaded: set[str], rng: random.Random
    ) -> None:
        self._stack, self._tapped, self._uploaded, self._rng = stack, tapped, uploaded, rng
        self._originals: list[pubsub.PubsubMessage] = []

    def publish(self) -> tuple[str | None, int]:
        """Publish a few copies; return what was published (None if nothing yet) and how many."""
        self._originals += [
            message
            for message in drain_tap(self._stack, self._tapped)
            if message.attributes.get("eventType") == "OBJECT_FINALIZE"
            and message.attributes.get("objectId") in self._uploaded
        ]
        if not self._originals:
            return None, 0
        count = self._rng.randint(1, DUPLICATES_AT_ONCE)
        # Half of them of the latest uploads, likely still being processed: a duplicate that
        # meets a live claim waits for it; the others find the record done.
        recent = self._originals[-RECENT_ORIGINALS:]
        chosen = [
            self._rng.choice(recent if self._rng.random() < 0.5 else self._originals)
            for _ in range(count)
        ]
        published = republish(self._stack, chosen)
        keys = ", ".join(sorted(message.attributes["objectId"] for message in chosen))
        return f"duplicate notifications of {keys}", published


def _gcp_finish(
    config: ChaosConfig,
    stack: GcpStack,
    fleet: Fleet,
    uploads: list[Upload],
    say: Callable[[str], None],
) -> None:
    """Let the daemons finish, or time out: every upload terminal and notified in the ledger,
    and the leases a kill left behind run out (their messages redelivered and settled).

    Pub/Sub shows no count of what a subscription holds, and pulling it here would take
    messages from the daemons (each pull a delivery attempt, which the dead-letter policy
    counts): the ledger says when the work is done, the longest lease when the rest is.
    """
    keys = [u.key for u in uploads]
    deadline = time.monotonic() + config.finish_timeout_s
    leases_out_at = max(fleet.kill_times, default=0.0) + GCP_ACK_DEADLINE_S + 2  # wall clock
    while time.monotonic() < deadline:
        fleet.tend()
        items = gcp_ledger(stack)
        done = all(
            items.get(k, {}).get("status") in {"processed", "failed"}
            and items.get(k, {}).get("notified")
            for k in keys
        )
        if done and time.time() >= leases_out_at:
            return
        time.sleep(0.5)
    say(f"finish: timed out after {config.finish_timeout_s:.0f} s")


def _gcp_audit(
    stack: GcpStack,
    uploads: list[Upload],
    generations: dict[str, str],
    fleet: Fleet,
    report: ChaosReport,
) -> None:
    watcher = GcpWatcher(stack)
    watcher.settle(quiet_s=3, timeout_s=120)
    items = gcp_ledger(stack)
    # The daemons have drained (what they held is back at once) and no killed daemon's lease
    # is left (_gcp_finish outlasted them): one pull sees whatever is left.
    queued = object_ids(backlog(stack, stack.subscription, window_s=2, give_back=False))
    dead = object_ids(backlog(stack, stack.dead_letter_subscription, window_s=1, give_back=False))
    report.left_visible = sum(queued.values())
    report.dead_lettered = sum(dead.values())
    _judge_outcomes(uploads, items, watcher.by_key(), queued, dead, fleet, report, {})
    # The version of a Cloud Storage object is its generation.
    expected = {
        u.key: _expected_artifacts(stack.input_bucket, u, generations[u.key]) for u in uploads
    }
    present = object_names(stack, stack.output_bucket, f"{OUTPUT_PREFIX}{stack.input_bucket}/")
    _judge_artifacts(expected, set(present), items, report)


def _cut_publishes(proxy: FaultControl) -> dict[str, list[float]]:
    """When SNS accepted a Publish whose answer never reached the daemon, by object key."""
    cut: dict[str, list[float]] = {}
    for lost in proxy.lost_answers():
        if lost.operation != "sns.Publish":
            continue
        try:
            message = json.loads(dict(parse_qsl(lost.body)).get("Message", "{}"))
            cut.setdefault(str(message["source"]["key"]), []).append(lost.at)
        except (ValueError, KeyError, TypeError):
            continue
    return cut


def _cut_publish_cause(fleet: Fleet, at: float) -> str:
    """Why the answer to an accepted publish was lost: a refusal cut the connection, or the
    daemon that sent it was SIGKILLed before the answer came (the crash window)."""
    if any(start - 0.5 <= at <= end + 0.5 for start, end in fleet.refusals):
        return "refusal cut the answer to an accepted publish; published again"
    if any(at - 5 <= killed <= at + 0.5 for killed in fleet.kill_times):
        return "crash between publish and mark-notified"
    return "answer to an accepted publish lost; published again"


def _audit(
    stack: LocalStack,
    uploads: list[Upload],
    fleet: Fleet,
    report: ChaosReport,
    cut_publishes: dict[str, list[float]],
) -> None:
    watcher = Watcher(stack)
    watcher.settle(quiet_s=3, timeout_s=120)
    items = ledger(stack)
    # Messages still on the queues (after the in-flight ones became visible again).
    deadline = time.monotonic() + 12
    while queue_counts(stack)[1] and time.monotonic() < deadline:
        time.sleep(0.5)
    report.left_visible, report.left_in_flight = queue_counts(stack)
    queued = _queued_keys(stack, stack.queue_url)
    dead = _queued_keys(stack, stack.dead_letter_queue_url)
    report.dead_lettered = sum(dead.values())
    _judge_outcomes(uploads, items, watcher.by_key(), queued, dead, fleet, report, cut_publishes)
    expected = {u.key: _expected_artifacts(stack.input_bucket, u, _md5(u)) for u in uploads}
    present = object_keys(stack, stack.output_bucket, f"{OUTPUT_PREFIX}{stack.input_bucket}/")
    _judge_artifacts(expected, set(present), items, report)


def _judge_outcomes(
    uploads: list[Upload],
    items: dict[str, dict[str, Any]],
    sent: dict[str, list[Notification]],
    queued: Counter[str],
    dead: Counter[str],
    fleet: Fleet,
    report: ChaosReport,
    cut_publishes: dict[str, list[float]],
) -> None:
    """Each upload's verdict, from the ledger ``items``, the notifications ``sent`` and the
    keys still ``queued`` or ``dead`` lettered; counted into ``report``."""
    uploaded = {u.key for u in uploads}
    report.unexpected_notifications = sum(len(v) for k, v in sent.items() if k not in uploaded)
    logs = _key_events(fleet.all)
    for item in uploads:
        status = items.get(item.key, {}).get("status")
        notifications = sent.get(item.key, [])
        if status in {"processed", "failed"}:
            if status != item.expect:
                report.wrong_outcome += 1
                report.problems.append(f"{item.key}: {status}, expected {item.expect}")
            elif status == "processed":
                report.processed += 1
            else:
                report.failed_as_expected += 1
            if not notifications:
                report.unnotified += 1
                report.problems.append(f"{item.key}: {status} but never notified")
        elif item.key in queued or item.key in dead:
            report.unfinished += 1
            where = "DLQ" if item.key in dead else "main queue"
            report.problems.append(f"{item.key}: unfinished ({status}), message in the {where}")
        else:
            report.lost += 1
            report.problems.append(f"{item.key}: LOST ({status}), no message anywhere")
        if len(notifications) > 1:
            records = {(n.notification_id, n.finished_at, n.status) for n in notifications}
            extra = len(notifications) - 1
            if len(records) == 1:
                report.dup_notifications_resent += extra
                cut = cut_publishes.get(item.key)
                cause = (
                    _cut_publish_cause(fleet, cut[0])
                    if cut
                    else _resend_cause(logs.get(item.key, []), notifications[0].finished_at)
                )
                report.resend_causes[cause] += extra
                report.problems.append(f"{item.key}: notified {len(notifications)}x ({cause})")
            else:
                report.dup_notifications_reprocessed += extra
                report.problems.append(f"{item.key}: processed again: {sorted(records)}")


def _judge_artifacts(
    expected: dict[str, set[str]],
    present: set[str],
    items: dict[str, dict[str, Any]],
    report: ChaosReport,
) -> None:
    """Exactly one set of artifacts per object version: the ``expected`` keys of each
    processed upload ``present``, and nothing else under the output prefix."""
    every_expected = set().union(*expected.values())
    report.dup_artifacts = len(present - every_expected)
    for key in sorted(present - every_expected)[:10]:
        report.problems.append(f"unexpected artifact {key}")
    report.missing_artifacts = sum(
        len(keys - present)
        for key, keys in expected.items()
        if items.get(key, {}).get("status") == "processed"
    )


def _expected_artifacts(bucket: str, item: Upload, version: str) -> set[str]:
    """Artifact keys are deterministic: {prefix}{bucket}/{key}/{version}/{name}."""
    names = {"image": THUMBNAIL_NAMES, "pdf": PDF_NAMES}.get(item.kind, ())
    folder = artifact_prefix(OUTPUT_PREFIX, bucket, item.key, version)
    return {folder + name for name in names}


def _md5(item: Upload) -> str:
    """The version of an S3 object in an unversioned bucket: its ETag, the MD5 of a single
    PUT's body."""
    return hashlib.md5(item.body).hexdigest()


def _queued_keys(stack: LocalStack, queue_url: str) -> Counter[str]:
    """Object keys named by the messages visible on a queue (read once, hidden for a minute)."""
    sqs = stack.client("sqs")
    found: Counter[str] = Counter()
    while True:
        reply = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
        )
        messages = reply.get("Messages", [])
        if not messages:
            return found
        for message in messages:
            try:
                records = json.loads(message["Body"]).get("Records", [])
            except (ValueError, AttributeError):
                continue
            for record in records:
                key = record.get("s3", {}).get("object", {}).get("key")
                if key:
                    found[unquote_plus(key)] += 1


def _key_events(daemons: Iterable[Daemon]) -> dict[str, list[dict[str, Any]]]:
    events: dict[str, list[dict[str, Any]]] = {}
    for daemon in daemons:
        for record in daemon.log_records():
            key = record.get("key")
            if isinstance(key, str):
                events.setdefault(key, []).append({**record, "_pid": daemon.pid})
    return events


FINISHED_EVENTS = frozenset({"job_finished", "job_processed"})  # logged after mark-notified


def _resend_cause(events: list[dict[str, Any]], finished_at: str) -> str:
    """Why one record was notified twice, from the daemons' logs.

    The record was completed in the ledger at ``finished_at``. A retryable error logged after
    that can only come from the publish or from the mark-notified write that follows it. If the
    owner logged the job as finished, it did notify and mark; the second notification then came
    from a duplicate delivery that read the ledger in between. Otherwise the owner died there.
    """
    finished = _instant(finished_at)
    errors = " ".join(
        str(e.get("error", ""))
        for e in events
        if e.get("event") == "job_retryable" and _instant(str(e.get("timestamp"))) >= finished
    )
    if "sns.Publish" in errors or "pubsub.Publish" in errors:
        return "publish answer lost, published again"
    if (
        "dynamodb.PutItem" in errors
        or "firestore.Commit" in errors
        or any(e.get("event") == "notified_mark_failed" for e in events)
    ):
        return "mark-notified write failed after publish"
    if any(e.get("event") in FINISHED_EVENTS for e in events):
        return "duplicate delivery raced the owner's mark-notified"
    return "crash between publish and mark-notified"


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)

"""The systemd notify protocol, spoken directly: a datagram per state change on NOTIFY_SOCKET.

It is a few lines over a Unix socket, so no library is needed; with NOTIFY_SOCKET unset every
call is a no-op, which is the case everywhere but under a Type=notify unit.
"""

from __future__ import annotations

import os
import socket

from pipelined.logs import get_logger

log = get_logger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An address starting with '@' is in the abstract namespace: a leading NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        watchdog_pid = env.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            watchdog_usec = 0  # the watchdog is meant for another process
        self.watchdog_interval_s = watchdog_usec / 2 / 1_000_000 if watchdog_usec else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(state.encode(), self._address)
        except OSError as error:
            log.warning("systemd_notify_failed", error=str(error), state=state)

    def ready(self) -> None:
        self.notify("READY=1\nSTATUS=polling")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self, drain_timeout_s: float) -> None:
        # Ask for the drain time plus a margin, so systemd does not kill us mid-drain.
        extend_usec = int((drain_timeout_s + 15) * 1_000_000)
        self.notify(f"STOPPING=1\nSTATUS=draining\nEXTEND_TIMEOUT_USEC={extend_usec}")

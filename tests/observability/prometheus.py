"""A real Prometheus server for a test: Debian's binary, on 127.0.0.1, with its own data
directory; queried through its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from pipelined.local import free_port

INTERVAL_S = 1  # scrape and rule evaluation, so that a test sees many of each in seconds


def find_prometheus() -> str | None:
    """The server make installs next to the venv's Python (deploy/test-tools.sh), else PATH's."""
    beside = Path(sys.executable).parent / "prometheus"
    if beside.is_file():
        return str(beside)
    return shutil.which("prometheus")


class PrometheusError(AssertionError):
    pass


class Prometheus:
    """``with Prometheus(binary, workdir, target, rule_files) as server:`` scrapes ``target``
    (host:port) as job "pipelined" every second and evaluates ``rule_files`` every second."""

    def __init__(self, binary: str, workdir: Path, target: str, rule_files: list[Path]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.target = target
        self.rule_files = rule_files
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        config = {
            "global": {
                "scrape_interval": f"{INTERVAL_S}s",
                "scrape_timeout": f"{INTERVAL_S}s",
                "evaluation_interval": f"{INTERVAL_S}s",
            },
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": "pipelined", "static_configs": [{"targets": [self.target]}]}
            ],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
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
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- HTTP API ----------------------------------------------------------------------------

    def get(self, path: str, **params: str) -> dict[str, Any]:
        """The JSON of GET ``path``; an error reply (HTTP 4xx/5xx carries JSON too) is returned
        as such, for the caller to judge."""
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                body = reply.read()
        except urllib.error.HTTPError as error:
            body = error.read()
        loaded: dict[str, Any] = json.loads(body)
        return loaded

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def values(self, expr: str) -> list[float]:
        """The sample values of an instant query that must succeed."""
        reply = self.query(expr)
        if reply.get("status") != "success":
            raise PrometheusError(f"{expr}: {reply.get('errorType')}: {reply.get('error')}")
        result = reply["data"]["result"]
        if reply["data"]["resultType"] == "scalar":
            return [float(result[1])]
        return [float(sample["value"][1]) for sample in result]

    def wait(self, what: str, condition: Any, timeout_s: float) -> None:
        """Poll ``condition()`` until true; fail naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited early:\n{self.log_tail()}")
            try:
                if condition():
                    return
            except (OSError, ValueError, PrometheusError):
                pass  # not up yet
            time.sleep(0.2)
        raise PrometheusError(f"timed out waiting for {what}:\n{self.log_tail()}")

    def wait_at_least(self, expr: str, minimum: float, timeout_s: float = 20) -> None:
        """Until the instant query ``expr`` has a sample of at least ``minimum``."""
        self.wait(
            f"{expr} >= {minimum}",
            lambda: any(value >= minimum for value in self.values(expr)),
            timeout_s,
        )

    def wait_ready(self, timeout_s: float = 20) -> None:
        def ready() -> bool:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                return int(reply.status) == 200

        self.wait("/-/ready", ready, timeout_s)

    def last_scrape(self) -> float:
        """The time of the target's last scrape (0 before the first)."""
        return max(self.values('timestamp(up{job="pipelined"} == 1)'), default=0.0)

    def wait_new_scrapes(self, scrapes: int, timeout_s: float = 20) -> None:
        """Until the target has been scraped successfully ``scrapes`` more times from now."""
        since = self.last_scrape()
        self.wait(
            f"{scrapes} scrapes of {self.target}",
            lambda: self.last_scrape() >= since + scrapes * INTERVAL_S - INTERVAL_S / 2,
            timeout_s,
        )

    def rules(self) -> list[dict[str, Any]]:
        reply = self.get("/api/v1/rules")
        if reply.get("status") != "success":
            raise PrometheusError(f"/api/v1/rules: {reply}")
        groups: list[dict[str, Any]] = reply["data"]["groups"]
        return groups

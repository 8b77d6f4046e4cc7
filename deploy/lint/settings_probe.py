"""Does the daemon accept the settings each deployment artifact gives it? (deploy/lint.sh)

Runs with the interpreter of the image venv, where the pipelined package is installed, and feeds
every environment collected by `checks.py env-sources` (rendered ConfigMaps, the systemd example
environment file, the ECS task definition with its parameter defaults) to the daemon's own
settings loader. Catches values the daemon would reject at start-up (exit code 2), e.g. a log
level in the wrong case. Prints one line per rejected source; exit 1 if any.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from pipelined.errors import ConfigError
from pipelined.settings import load_settings


def main(path: str) -> int:
    with open(path, encoding="utf-8") as stream:
        sources: dict[str, dict[str, str]] = json.load(stream)
    failures = 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINED_", "AWS_"))}
    with tempfile.TemporaryDirectory() as empty:
        os.chdir(empty)  # no stray .env file
        for name, environment in sources.items():
            os.environ.clear()
            os.environ.update(clean)
            os.environ.update(environment)
            try:
                load_settings()
            except ConfigError as error:
                print(f"{name}: {error}")
                failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Is every PIPELINED_* name the deployment artifacts set one the daemon reads? (deploy/lint.sh)

The daemon's settings ignore variables they do not know (extra="ignore"), so a misspelt or stale
name in a ConfigMap, an env file or a task definition would leave its setting at the default
without a word. Runs with the interpreter of the image venv, where the pipelined package is
installed, on the environments collected by `checks.py env-sources`, and compares their
PIPELINED_* names with the fields of the daemon's own settings model (an alias, such as
GOOGLE_CLOUD_PROJECT, replaces the prefixed name). Other variables belong to the cloud SDKs and
are not checked. Prints one line per unknown name; exit 1 if any.
"""

from __future__ import annotations

import json
import sys

from pydantic import AliasChoices

from pipelined.settings import ENV_PREFIX, Settings


def read_names() -> set[str]:
    """The variable names the settings model reads (upper case: matching ignores case)."""
    names: set[str] = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{ENV_PREFIX}{field}".upper())
    return names


def main(path: str) -> int:
    with open(path, encoding="utf-8") as stream:
        sources: dict[str, dict[str, str]] = json.load(stream)
    known = read_names()
    unknown = 0
    for name, environment in sources.items():
        for key in sorted(environment):
            if key.upper().startswith(ENV_PREFIX) and key.upper() not in known:
                print(f"{name}: {key} is not a setting of the daemon")
                unknown += 1
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

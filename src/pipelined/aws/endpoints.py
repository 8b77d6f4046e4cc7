"""Endpoint resolution that botocore's own cache can serve.

botocore resolves each call's endpoint by evaluating the service's endpoint ruleset, and
caches the result keyed by every parameter the ruleset declares. S3's declares Key, Prefix and
CopySource but never reads them, so each new object key misses the cache and the whole S3
ruleset is evaluated again: about 4 % of the daemon's main-process CPU in bench/e2e.py
(botocore issue 3528; fixed upstream by dropping those parameters, in releases newer than the
botocore aioboto3 pins). This does the same for our clients, for any parameter no rule reads.
"""

from __future__ import annotations

from typing import Any


def cache_endpoints_by_what_they_depend_on(client: Any) -> None:
    """Leave out of ``client``'s endpoint resolution the parameters its rules never read.

    Required parameters stay, so the ruleset's own checks are unchanged; a client without a
    ruleset resolver, or a botocore whose resolver looks different, is left as it is.
    """
    resolver = getattr(client, "_ruleset_resolver", None)
    definitions = getattr(resolver, "_param_definitions", None)
    ruleset = getattr(getattr(resolver, "_provider", None), "ruleset", None)
    if not isinstance(definitions, dict) or ruleset is None:
        return
    read = referenced_names(ruleset.rules)
    resolver._param_definitions = {  # type: ignore[union-attr]
        name: definition
        for name, definition in definitions.items()
        if name in read or getattr(definition, "required", False)
    }


def referenced_names(node: object) -> set[str]:
    """Every name a ruleset's rules refer to (``{"ref": name}``), at any depth."""
    found: set[str] = set()
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if isinstance(item.get("ref"), str):
                found.add(item["ref"])
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
        elif hasattr(item, "__dict__"):  # botocore's parsed rules and conditions
            pending.extend(vars(item).values())
    return found

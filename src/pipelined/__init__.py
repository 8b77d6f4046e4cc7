"""pipelined: a file-processing daemon on object storage events."""

from functools import cache
from importlib import metadata


@cache
def version() -> str:
    """The installed distribution's version; "unknown" when run from a bare source tree."""
    try:
        return metadata.version("pipelined")
    except metadata.PackageNotFoundError:
        return "unknown"

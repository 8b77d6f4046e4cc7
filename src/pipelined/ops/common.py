"""What the operator commands share: exit codes, ``--json``, the console, object URLs.

Heavy libraries (rich, the clouds' clients) load inside the functions that need them, so that
``pipelined --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from pipelined.settings import Settings

EXIT_OK = 0
EXIT_FAILURE = 1
"""A check failed, an item is missing, the command could not do what was asked."""
EXIT_USAGE = 2
"""A bad argument or a bad setting: nothing was tried."""

Scheme = Literal["s3", "gs"]
SCHEMES: dict[Scheme, str] = {"s3": "aws", "gs": "gcp"}
"""Each object URL's scheme and the backend whose buckets it names."""

F = TypeVar("F", bound=Callable[..., Any])


def json_option(command: F) -> F:
    """``--json``: print one JSON document on stdout instead of the table; the callback gets
    ``as_json``. Given after the subcommand, like every option of it."""
    return click.option(
        "--json", "as_json", is_flag=True, help="print the result as JSON on stdout"
    )(command)


def backend_option(command: F) -> F:
    """``--backend aws|gcp`` (default aws), for the commands that start or reach a stack
    without the daemon's settings; the callback gets ``backend``."""
    return click.option(
        "--backend",
        type=click.Choice(["aws", "gcp"]),
        default="aws",
        show_default=True,
        help="which cloud",
    )(command)


def print_json(document: object) -> None:
    """The ``--json`` output: one indented document, keys in the order given."""
    click.echo(json.dumps(document, indent=2, default=str))


PIPE_WIDTH = 120
"""Columns of a table written to a pipe or a log, where no terminal says how wide to be."""


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): colours on a terminal, plain text in a pipe."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def fail(message: str) -> None:
    """Print ``pipelined: message`` on stderr, as every command's error line reads."""
    click.echo(f"pipelined: {message}", err=True)


@dataclass(frozen=True)
class ObjectUrl:
    """``s3://bucket/key`` or ``gs://bucket/key``."""

    scheme: Scheme
    bucket: str
    key: str

    @property
    def backend(self) -> str:
        return SCHEMES[self.scheme]

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"


def parse_object_url(text: str) -> ObjectUrl:
    """``s3://bucket/key`` or ``gs://bucket/key``; ValueError saying what is wrong.

    The key is taken as it is written, not URL-decoded: it is the object's name, spaces and
    plus signs included, as the ledger and the notifications name it.
    """
    scheme, separator, rest = text.partition("://")
    if not separator or scheme not in SCHEMES:
        raise ValueError(f"{text!r} is not an s3://BUCKET/KEY or gs://BUCKET/KEY URL")
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ValueError(f"{text!r} names no {'bucket' if not bucket else 'key'}")
    return ObjectUrl("gs" if scheme == "gs" else "s3", bucket, key)


class ObjectUrlType(click.ParamType[ObjectUrl, object]):
    """A click argument that is an ObjectUrl; a bad one is a usage error (exit 2)."""

    name = "URL"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> ObjectUrl:
        if isinstance(value, ObjectUrl):
            return value
        try:
            return parse_object_url(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


OBJECT_URL = ObjectUrlType()


def load_backend_settings(expected_backend: str | None = None) -> Settings:
    """The daemon's own settings (ConfigError, exit 2, when bad); with ``expected_backend``, a
    usage error unless PIPELINED_BACKEND is that backend (an s3:// URL on a gcp deployment)."""
    from pipelined.settings import load_settings

    settings = load_settings()
    if expected_backend is not None and settings.backend != expected_backend:
        raise click.UsageError(
            f"the URL is for backend {expected_backend}, but PIPELINED_BACKEND is "
            f"{settings.backend}"
        )
    return settings

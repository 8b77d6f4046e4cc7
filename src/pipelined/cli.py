"""Command line: the daemon, the embedded stacks, local helpers and the operator commands.

A click group. Each command imports its heavy parts (the emulators, the daemon, the clouds'
clients) only when chosen, so ``pipelined --help`` starts fast. ``main(argv)`` runs the group
and returns the exit code: 0 done, 1 failed, 2 a bad argument or setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import click

from pipelined.errors import ConfigError, PipelinedError
from pipelined.ops.check import check
from pipelined.ops.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    backend_option,
    fail,
    json_option,
)
from pipelined.ops.dlq import dlq
from pipelined.ops.replay import replay
from pipelined.ops.status import status

EXIT_CONFIG = EXIT_USAGE  # a bad setting is reported like a bad argument


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Turn uploads into thumbnails, PDF text and metadata, driven by a queue.",
)
def cli() -> None:
    pass


@cli.command(help="Run the daemon against what the settings point at.")
def run() -> int:
    from pipelined.settings import load_settings

    settings = load_settings()  # first: a bad setting exits 2 whatever the rest imports
    import uvloop

    from pipelined.app import run_daemon
    from pipelined.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    # libuv's loop: under load the loop's own bookkeeping is a fifth of the main process's
    # CPU, and uvloop does it in C (docs/performance.md).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_daemon(settings))
    return EXIT_OK


@cli.command(
    short_help="Start an embedded cloud stack and the daemon, left running.",
    help="Start an embedded cloud stack and the daemon, and leave them running; print the "
    "endpoints and the commands to upload a file and watch the notifications.",
)
@backend_option
@click.option("--port", type=int, default=4566, show_default=True, help="the AWS emulator's port")
def local(backend: str, port: int) -> int:
    from pipelined.demo import run_local

    return asyncio.run(run_local(_cloud(backend), port))


@cli.command(
    short_help="Process sample files on an embedded stack, then exit.",
    help="Process sample files on an embedded stack, print what came out and copy the "
    "artifacts and notifications into a local folder (replaced on each run); exit 0 when "
    "every sample ended as expected.",
)
@backend_option
@click.option(
    "--out",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="the local folder for the artifacts (default: pipelined-demo-output here)",
)
def demo(backend: str, out: Path | None) -> int:
    from pipelined.demo import DEMO_OUTPUT_DIR, run_demo

    return asyncio.run(run_demo(_cloud(backend), out or DEMO_OUTPUT_DIR))


@cli.command(
    short_help="Upload a file to a bucket.",
    help="Upload a file to a bucket (AWS_* or Google's variables say where).",
)
@backend_option
@click.argument("path")
@click.option("--bucket", required=True, help="the bucket to upload to")
@click.option("--key", help="object key (default: the file name)")
def upload(backend: str, path: str, bucket: str, key: str | None) -> int:
    from pipelined import tools

    return tools.upload(path, bucket, key, backend)


@cli.command(
    short_help="Run the processors on a local file, no cloud at all.",
    help="Run the processors on a local file, no cloud at all; exit 1 if the file fails, "
    "2 if there is no such file.",
)
@click.argument("path", metavar="FILE")
@click.option("--out", metavar="DIR", help="where the artifacts go (default FILE.pipelined)")
@json_option
def process(path: str, out: str | None, as_json: bool) -> int:
    from pipelined.offline import process_local

    return process_local(path, out, as_json=as_json)


@cli.command(
    short_help="Print notifications as they arrive.",
    help="Print notifications as they arrive, from an SQS queue subscribed to the topic or a "
    "Pub/Sub subscription of it (one of the two options).",
)
@click.option("--queue-url", help="an SQS queue subscribed to the SNS topic")
@click.option("--subscription", help="a Pub/Sub subscription of the results topic")
def watch(queue_url: str | None, subscription: str | None) -> int:
    if (queue_url is None) == (subscription is None):
        raise click.UsageError("give one of --queue-url and --subscription")
    from pipelined import tools

    if subscription is not None:
        return tools.watch_subscription(subscription)
    assert queue_url is not None
    return tools.watch(queue_url)


cli.add_command(check)
cli.add_command(status)
cli.add_command(replay)
cli.add_command(dlq)


def _cloud(backend: str) -> Literal["aws", "gcp"]:
    return "gcp" if backend == "gcp" else "aws"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: the process's) and return the exit code."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="pipelined",
            standalone_mode=False,
        )
    except click.ClickException as error:  # a usage error is 2, as click's own exit says
        error.show()
        return error.exit_code
    except click.Abort as error:
        # Ctrl-C ends a foreground command (local, watch) as a stop asked for, not a failure.
        return EXIT_OK if isinstance(error.__cause__, KeyboardInterrupt) else EXIT_FAILURE
    except ConfigError as error:
        fail(str(error))
        return EXIT_CONFIG
    except PipelinedError as error:  # a cloud call failed (status's read): its reason, no trace
        fail(str(error))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    return result if isinstance(result, int) else EXIT_OK

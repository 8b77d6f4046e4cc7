"""Command line: ``run``, ``local``, ``demo`` and two helpers for the local stack."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from pipelined.errors import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipelined",
        description="Turn S3 uploads into thumbnails, PDF text and metadata, driven by SQS.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="run the daemon against what the settings point at")
    local = commands.add_parser("local", help="start an embedded cloud stack and the daemon")
    _add_backend(local)
    local.add_argument(
        "--port", type=int, default=4566, help="the AWS emulator's port (default 4566)"
    )
    demo = commands.add_parser("demo", help="process sample files on an embedded stack, then exit")
    _add_backend(demo)
    upload = commands.add_parser(
        "upload", help="upload a file to a bucket (AWS_* or Google's variables say where)"
    )
    _add_backend(upload)
    upload.add_argument("path")
    upload.add_argument("--bucket", required=True)
    upload.add_argument("--key", help="object key (default: the file name)")
    process = commands.add_parser(
        "process",
        help="run the processors on a local file, no cloud at all; exit 1 if the file fails",
    )
    process.add_argument("path", metavar="FILE")
    process.add_argument(
        "--out", metavar="DIR", help="where the artifacts go (default FILE.pipelined)"
    )
    process.add_argument("--json", action="store_true", help="print the outcome as JSON")
    watch = commands.add_parser("watch", help="print notifications as they arrive")
    source = watch.add_mutually_exclusive_group(required=True)
    source.add_argument("--queue-url", help="an SQS queue subscribed to the SNS topic")
    source.add_argument("--subscription", help="a Pub/Sub subscription of the results topic")
    return parser


def _add_backend(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--backend", choices=("aws", "gcp"), default="aws", help="which cloud (default aws)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as error:
        print(f"pipelined: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    # Each command imports its heavy parts (the emulators, the daemon) only when chosen.
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": lambda _: _run(),
        "demo": _demo,
        "local": _local,
        "process": _process,
        "upload": _upload,
        "watch": _watch,
    }
    return commands[args.command](args)


def _demo(args: argparse.Namespace) -> int:
    from pipelined.demo import run_demo

    return asyncio.run(run_demo(args.backend))


def _local(args: argparse.Namespace) -> int:
    from pipelined.demo import run_local

    return asyncio.run(run_local(args.backend, args.port))


def _process(args: argparse.Namespace) -> int:
    from pipelined.offline import process_local

    return process_local(args.path, args.out, as_json=args.json)


def _upload(args: argparse.Namespace) -> int:
    from pipelined import tools

    return tools.upload(args.path, args.bucket, args.key, args.backend)


def _watch(args: argparse.Namespace) -> int:
    from pipelined import tools

    if args.subscription:
        return tools.watch_subscription(args.subscription)
    return tools.watch(args.queue_url)


def _run() -> int:
    from pipelined.settings import load_settings

    settings = load_settings()  # first: a bad setting exits 2 whatever the rest imports
    from pipelined.app import run_daemon
    from pipelined.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(run_daemon(settings))
    return EXIT_OK

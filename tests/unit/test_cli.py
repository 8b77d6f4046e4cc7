"""The command line's shape: every command has --help, usage errors exit 2, options (--json
among them) go after the subcommand, and ``pipelined --help`` loads no heavy module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelined.cli import cli, main
from pipelined.ops.common import ObjectUrl, parse_object_url

COMMANDS = sorted(cli.commands)


def test_the_commands_are_all_there() -> None:
    assert {"run", "local", "demo", "upload", "process", "watch", "check", "status"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: pipelined {command} ")
    assert "--help" in out


def test_the_group_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {command} " in out for command in COMMANDS)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "Usage: pipelined"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["upload", "photo.jpg"], "Missing option '--bucket'"),
        (["demo", "--backend", "azure"], "'azure' is not one of"),
        (["watch"], "give one of --queue-url and --subscription"),
        (["watch", "--queue-url", "q", "--subscription", "s"], "give one of"),
        (["status", "bucket/key"], "is not an s3://BUCKET/KEY or gs://BUCKET/KEY URL"),
        (["status", "s3://bucket"], "names no key"),
        (["check", "--timeout", "0"], "--timeout"),
        (["--json", "check"], "No such option '--json'"),
    ],
)
def test_usage_errors_exit_2_and_say_what_is_wrong(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_a_bad_setting_exits_2_with_one_line_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "--json"]) == 2
    err = capsys.readouterr().err
    assert err == "pipelined: invalid settings: PIPELINED_OUTPUT_BUCKET is required but not set\n"


@pytest.mark.parametrize(
    "argv",
    [["check", "--json"], ["status", "s3://b/k", "--json"], ["status", "--json", "s3://b/k"]],
)
def test_json_is_an_option_of_the_subcommand(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Parsed: the command went on to read its settings (none here), rather than a usage error.
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("pipelined: invalid settings:")


@pytest.mark.parametrize(
    ("text", "url"),
    [
        (
            "s3://uploads/photos/beach trip+1.jpg",
            ObjectUrl("s3", "uploads", "photos/beach trip+1.jpg"),
        ),
        ("gs://b/a/b/c", ObjectUrl("gs", "b", "a/b/c")),
    ],
)
def test_object_urls_keep_their_key_as_written(text: str, url: ObjectUrl) -> None:
    assert parse_object_url(text) == url
    assert str(url) == text
    assert url.backend == ("aws" if url.scheme == "s3" else "gcp")


@pytest.mark.parametrize("text", ["http://b/k", "s3:/b/k", "s3://", "s3:///k", "gs://b/"])
def test_other_urls_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"URL|names no"):
        parse_object_url(text)


def test_help_loads_neither_the_daemon_nor_a_cloud_nor_rich() -> None:
    probe = (
        "import json, sys\n"
        "from pipelined.cli import main\n"
        "main(['--help'])\n"
        "heavy = ['pipelined.settings', 'pipelined.app', 'boto3', 'aioboto3', 'google.cloud',"
        " 'rich', 'PIL']\n"
        "print(json.dumps([name for name in heavy if name in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert json.loads(result.stdout.splitlines()[-1]) == []

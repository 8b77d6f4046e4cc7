"""Where a py-spy profile's samples go: a raw (folded) profile summed into a few categories.

bench/e2e.py --profile FILE records the daemon's main process with py-spy in raw format
(one line per distinct stack, frames separated by ";", then a count). Each sample is charged
to the category of the innermost frame that falls in one, so "request signing" means time
inside SigV4 wherever it was called from. Prints the categories, then the heaviest functions
by inclusive share.

Usage: python bench/spy_summary.py FILE [--top 30]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Checked in order for each frame, innermost first; the first that matches takes the sample.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("request signing (SigV4)", ("botocore/auth.py", "signers.py", "hmac.py", "hashlib")),
    ("JSON", ("json/",)),
    ("logging", ("structlog/", "logging/", "pipelined/logs.py")),
    ("metrics", ("prometheus_client/", "pipelined/metrics.py")),
    (
        "pool: pickling, pebble, futures",
        ("pebble/", "multiprocessing/", "concurrent/", "pickle", "pipelined/pool.py"),
    ),
    (
        "TCP connect and close",
        ("aiohappyeyeballs/", "connector.py", "sock_connect", "socket.py", "_call_connection_lost"),
    ),
    ("HTTP client (aiohttp)", ("aiohttp/", "multidict", "yarl/")),
    ("botocore: serialise, parse, hooks, user agent", ("botocore/", "aiobotocore/")),
    ("temp files and copies", ("shutil.py", "tempfile.py", "pathlib.py", "aiofiles/")),
    ("event loop and selector", ("asyncio/", "selectors.py")),
    ("pipelined's own code", ("pipelined/",)),
)


# Innermost frames that are waits py-spy's idle detection lets through (blocking C calls and
# sleeps): charged to "waiting", and left out of the CPU shares.
WAITS = (
    "EpollSelector.select (",
    "unix_poll (pebble/",
    "pool_manager_loop (pebble/pool/process.py:210)",  # its time.sleep
    "_worker (concurrent/futures/thread.py:81)",  # an idle executor thread's queue.get
    "Condition.wait (",
)
WAITING = "waiting (blocked, not CPU)"


def category_of(frames: list[str]) -> str:
    if any(wait in frames[-1] for wait in WAITS):
        return WAITING
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def summarise(path: Path, top: int) -> None:
    categories: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, count_text = line.rsplit(" ", 1)
        count = int(count_text)
        frames = stack.split(";")
        total += count
        categories[category_of(frames)] += count
        for function in {re.sub(r":\d+\)$", ")", frame) for frame in frames}:
            inclusive[function] += count
    busy = total - categories[WAITING]
    print(f"{total} samples of the main process (py-spy, idle excluded), {busy} on CPU\n")
    print(" of all  of CPU")
    for name, count in categories.most_common():
        share = "" if name == WAITING else f"{100 * count / busy:6.1f}%"
        print(f"{100 * count / total:6.1f}% {share:>7}  {name}")
    print(f"\nheaviest functions, inclusive (top {top}):")
    for function, count in inclusive.most_common(top):
        print(f"{100 * count / total:6.1f}%  {function}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    arguments = parser.parse_args()
    summarise(arguments.profile, arguments.top)


if __name__ == "__main__":
    main()

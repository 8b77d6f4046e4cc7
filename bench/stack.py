"""The embedded AWS stack (moto server, as pipelined.local runs it) in a process of its own.

Run by bench/e2e.py so that the emulator's CPU is never counted as the daemon's or the
baseline's. Prints the endpoint URL on one line, then serves until its standard input closes
(so it never outlives the bench, even one killed with SIGKILL).

Usage: python bench/stack.py
"""

import signal
import sys

from pipelined.local import emulator


def main() -> None:
    # A Ctrl-C reaches the whole process group; the bench stops the emulator last, itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with emulator() as endpoint_url:
        print(endpoint_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()

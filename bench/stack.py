"""The embedded AWS stack (moto, as pipelined.local runs it) in a process of its own.

Run by bench/e2e.py so that the emulator's CPU is never counted as the daemon's or the
baseline's. Prints the endpoint URL on one line, then serves until its standard input closes
(so it never outlives the bench, even one killed with SIGKILL).

moto's own server (werkzeug's development server) closes the connection after every answer,
while AWS keeps connections alive; a client there pays a TCP connect and close per call that it
never pays against AWS. So the bench serves moto's application through waitress, which keeps
HTTP/1.1 connections alive. ``--moto-server`` serves it as pipelined.local does, to compare.

Usage: python bench/stack.py [--moto-server]
"""

import logging
import signal
import sys
import threading

import waitress
from moto.server import DomainDispatcherApplication, create_backend_app

from pipelined.local import emulator, make_dynamodb_writes_atomic

THREADS = 16
"""waitress's request threads: more than the daemon's and the bench's connections together."""


def serve_keep_alive() -> None:
    make_dynamodb_writes_atomic()
    logging.getLogger("waitress").setLevel(logging.ERROR)
    server = waitress.create_server(
        DomainDispatcherApplication(create_backend_app),
        host="127.0.0.1",
        port=0,  # the kernel's choice, made as it binds
        threads=THREADS,
    )
    threading.Thread(target=server.run, daemon=True).start()
    print(f"http://127.0.0.1:{server.effective_port}", flush=True)
    sys.stdin.read()
    server.close()


def serve_moto() -> None:
    with emulator() as endpoint_url:
        print(endpoint_url, flush=True)
        sys.stdin.read()


def main() -> None:
    # A Ctrl-C reaches the whole process group; the bench stops the emulator last, itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "--moto-server" in sys.argv[1:]:
        serve_moto()
    else:
        serve_keep_alive()


if __name__ == "__main__":
    main()

"""Operator commands on a running deployment: check, status, replay, dlq.

Each module holds one command as a click object, registered by ``pipelined.cli``; the helpers
they share (exit codes, ``--json``, the console, object URLs, the settings) are in ``common``.
"""

"""Fault injection for pipelined: a fault-injecting proxy in front of the emulator, and tests."""

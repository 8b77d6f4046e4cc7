"""Chaos runs: daemons killed and restarted and AWS faults injected while uploads flow."""

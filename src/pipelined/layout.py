"""Where artifacts are written: one place for the key layout."""

from __future__ import annotations


def artifact_prefix(output_prefix: str, bucket: str, key: str, version: str) -> str:
    """``{output_prefix}{bucket}/{key}/{version}/``: the folder of one source version.

    Naming the version keeps every version's artifacts apart, so a consumer still working on a
    superseded version can only ever write that version's keys: the keys a newer record (or its
    notification) names always hold that newer version's output. A retry of the same version
    writes the same keys again, never new ones.
    """
    return f"{output_prefix}{bucket}/{key}/{version}/"


def probe_key(output_prefix: str, token: str) -> str:
    """``{output_prefix}.check/{token}``: where ``pipelined check`` writes and deletes a probe.

    Under the output prefix, so the daemon skips its event like any artifact's; never inside an
    artifact folder, since no bucket name starts with a dot.
    """
    return f"{output_prefix}.check/{token}"


def is_own_output(output_bucket: str, output_prefix: str, bucket: str, key: str) -> bool:
    """Is ``bucket``/``key`` an artifact (or probe) of the daemon's own? Never processed again,
    nor replayed."""
    return bucket == output_bucket and key.startswith(output_prefix)

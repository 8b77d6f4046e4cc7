"""A rules file through the whole daemon: the rule's renditions and PDF outputs in S3, its
placeholders and OCR'd pages in the metadata, its name everywhere."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import blurhash  # type: ignore[import-untyped]
import pytest
from PIL import Image

from pipelined import samples
from pipelined.local import LocalStack
from pipelined.processing.placeholders import PLACEHOLDER_KEYS
from tests.integration.helpers import ledger_item, notifications, object_bytes, put, running_daemon
from tests.processing.scans import mixed_pdf

pytestmark = pytest.mark.timeout(120)

RULES = """\
rules:
  - name: products
    match: {prefix: "products/", kind: image}
    image:
      renditions:
        - {name: w400, long_edge: 400, format: webp, quality: 80}
        - {name: square-128, width: 128, height: 128, fit: cover, gravity: attention, format: png}
"""


async def test_a_products_rule_makes_its_renditions_and_is_named(
    stack: LocalStack, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    photo = samples.photo_jpeg(width=1600, height=1200, orientation=1)
    async with running_daemon(rules_file=str(rules_file), thumbnail_sizes="256"):
        put(stack, "products/x.jpg", photo)
        put(stack, "other/y.jpg", photo)
        found = {n["source"]["key"]: n for n in await notifications(stack, 2)}

    expected = {
        "products/x.jpg": ("products", {"w400.webp": (400, 300), "square-128.png": (128, 128)}),
        "other/y.jpg": ("default", {"thumb-256.webp": (256, 192)}),
    }
    for key, (rule, sizes) in expected.items():
        notification = found[key]
        assert (notification["status"], notification["rule"]) == ("processed", rule)
        written = {}
        for artifact in notification["artifacts"]:
            data = object_bytes(stack, artifact["bucket"], artifact["key"])
            with Image.open(io.BytesIO(data)) as picture:
                assert picture.size == (artifact["width"], artifact["height"])
            written[artifact["key"].rsplit("/", 1)[-1]] = picture.size
        assert written == sizes
        item = ledger_item(stack, stack.input_bucket, key)
        assert item is not None
        assert item["rule"] == rule


AVATARS = """\
rules:
  - name: avatars
    match: {prefix: "avatars/", kind: image}
    image:
      renditions:
        - {name: avatar-128, width: 128, height: 128, fit: cover, gravity: attention, format: webp}
      placeholders: [thumbhash, dominant_color, phash]
"""


async def test_an_avatars_rule_records_its_placeholders(stack: LocalStack, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(AVATARS)
    photo = samples.photo_jpeg(width=1200, height=900, orientation=6)
    keys = ("avatars/a.jpg", "avatars/b.jpg", "avatars/logo.png", "other/c.jpg")
    async with running_daemon(rules_file=str(rules_file), thumbnail_sizes="256"):
        for key in keys:
            put(stack, key, samples.transparent_png() if key.endswith(".png") else photo)
        found = {n["source"]["key"]: n for n in await notifications(stack, len(keys))}

    for key in keys:
        notification = found[key]
        assert notification["status"] == "processed", notification
        item = ledger_item(stack, stack.input_bucket, key)
        assert item is not None
        # The ledger keeps what the notification said.
        assert item["metadata"] == notification["metadata"]
    placeholders = {key: _placeholders(found[key]["metadata"]) for key in keys}
    assert placeholders["other/c.jpg"] == {}  # the default rule asks for none
    for key in keys[:3]:
        values = placeholders[key]
        assert set(values) == {"blurhash", "dominant_color", "phash"}, key
        assert blurhash.is_valid_blurhash(values["blurhash"])
        assert re.fullmatch(r"#[0-9a-f]{6}", values["dominant_color"])
        assert re.fullmatch(r"[0-9a-f]{16}", values["phash"])
    # The same bytes, in whichever worker: the same values.
    assert placeholders["avatars/a.jpg"] == placeholders["avatars/b.jpg"]
    assert placeholders["avatars/logo.png"] != placeholders["avatars/a.jpg"]


def _placeholders(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metadata.items() if key in PLACEHOLDER_KEYS}


DOCUMENTS = """\
rules:
  - name: documents
    match: {kind: pdf}
    pdf:
      text: true
      preview: {size: 1024, pages: 2}
      ocr: {languages: [eng, deu]}
"""


async def test_a_documents_rule_previews_two_pages_and_reads_the_scanned_one(
    stack: LocalStack, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(DOCUMENTS)
    body = mixed_pdf("Typed first page", ["Scanned second page"], "Typed third page")
    async with running_daemon(rules_file=str(rules_file)):
        put(stack, "letters/mixed.pdf", body)
        (notification,) = await notifications(stack, 1)

    assert (notification["status"], notification["rule"]) == ("processed", "documents")
    files = {a["key"].rsplit("/", 1)[-1]: a for a in notification["artifacts"]}
    assert sorted(files) == ["preview-1024-p1.webp", "preview-1024-p2.webp", "text.txt"]
    for name in ("preview-1024-p1.webp", "preview-1024-p2.webp"):
        artifact = files[name]
        data = object_bytes(stack, artifact["bucket"], artifact["key"])
        with Image.open(io.BytesIO(data)) as picture:
            assert picture.size == (artifact["width"], artifact["height"])
            assert max(picture.size) == 1024
    text = object_bytes(stack, files["text.txt"]["bucket"], files["text.txt"]["key"])
    pages = text.decode("utf-8").split("\f")
    assert pages[0] == "Typed first page"
    assert pages[1].lower().split() == ["scanned", "second", "page"]  # Tesseract's reading
    assert pages[2] == "Typed third page"
    metadata = notification["metadata"]
    assert metadata["ocr_pages"] == "2"
    assert "ocr_error" not in metadata
    item = ledger_item(stack, stack.input_bucket, "letters/mixed.pdf")
    assert item is not None
    assert (item["rule"], item["metadata"]) == ("documents", metadata)

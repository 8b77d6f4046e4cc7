"""A rules file through the whole daemon: the rule's renditions in S3, its name everywhere."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from pipelined import samples
from pipelined.local import LocalStack
from tests.integration.helpers import ledger_item, notifications, object_bytes, put, running_daemon

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

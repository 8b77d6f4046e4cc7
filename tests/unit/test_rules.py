"""The rules file: its schema, its error messages, how a rule is chosen, and the default rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelined.errors import ConfigError
from pipelined.ledger.document import record_from_document
from pipelined.processing import ProcessingOptions
from pipelined.processing.options import RenditionSpec, default_renditions
from pipelined.rules import (
    DEFAULT_RULE,
    Rule,
    RulesError,
    load_rules,
    parse_rules,
    select,
)
from pipelined.settings import load_settings
from tests.unit.test_settings import REQUIRED

# The issue's three examples, exactly as written (docs/processing.md shows them too).
ISSUE_EXAMPLES = """\
rules:
  - name: avatars
    match: {prefix: "avatars/", kind: image}
    image:
      renditions:
        - {name: avatar-128, width: 128, height: 128, fit: cover, gravity: attention, format: avif}
        - {name: avatar-128-webp, width: 128, height: 128, fit: cover, gravity: attention, format: webp}
      placeholders: [thumbhash, dominant_color, phash]
  - name: products
    match: {prefix: "products/"}
    image:
      renditions:
        - {name: w400, long_edge: 400, format: webp, quality: 80}
        - {name: w800, long_edge: 800, format: webp}
        - {name: w1600, long_edge: 1600, format: jpeg}
  - name: documents
    match: {kind: pdf}
    pdf:
      text: true
      preview: {size: 1024, pages: 2}
      ocr: {languages: [eng, deu]}
"""  # noqa: E501 (as the issue wrote it)

PRODUCTS_ONLY = """\
rules:
  - name: products
    match: {prefix: "products/"}
    image:
      renditions:
        - {name: w400, long_edge: 400, format: webp, quality: 80}
        - {name: square, width: 200, height: 200, fit: cover, gravity: attention, format: png}
"""


def rules_of(yaml_rules: str) -> tuple[Rule, ...]:
    return parse_rules("rules:\n" + yaml_rules, "rules.yaml")


def problem_in(yaml_text: str) -> str:
    with pytest.raises(RulesError) as raised:
        parse_rules(yaml_text, "rules.yaml")
    return str(raised.value)


# -- the schema --------------------------------------------------------------------------


def test_the_issue_examples_parse_as_written() -> None:
    avatars, products, documents = parse_rules(ISSUE_EXAMPLES)
    assert (avatars.name, products.name, documents.name) == ("avatars", "products", "documents")
    assert avatars.image is not None
    assert avatars.image.placeholders == ("thumbhash", "dominant_color", "phash")
    assert avatars.image.renditions[0].spec() == RenditionSpec(
        "avatar-128", 128, 128, "cover", "attention", "avif", 82
    )
    assert products.image is not None
    assert [(r.spec().width, r.spec().quality) for r in products.image.renditions] == [
        (400, 80),
        (800, 82),
        (1600, 82),
    ]
    assert documents.pdf is not None
    assert documents.pdf.preview is not None
    assert (documents.pdf.preview.size, documents.pdf.preview.pages) == (1024, 2)
    assert documents.pdf.ocr is not None
    assert documents.pdf.ocr.languages == ("eng", "deu")


def test_the_issue_examples_load(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(ISSUE_EXAMPLES)
    loaded = load_rules(path)
    assert [rule.name for rule in loaded.rules] == ["avatars", "products", "documents"]


def test_a_supported_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(PRODUCTS_ONLY)
    loaded = load_rules(path)
    assert [rule.name for rule in loaded.rules] == ["products"]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 10}]}}\n"
            "  - {name: products, image: {renditions: [{name: y, long_edge: 0}]}}\n",
            "rules.yaml: rule 'products' (2): image.renditions.0.long_edge: "
            "must be between 1 and 10000",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 10, qualty: 80}]}}\n",
            "rule 'a' (1): image.renditions.0.qualty: is not a known field",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, width: 10}]}}\n",
            "rule 'a' (1): image.renditions.0: give either long_edge, or width and height",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 9, width: 9, height: 9}]}}\n",
            "rule 'a' (1): image.renditions.0: give either long_edge, or width and height",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x/y, long_edge: 10}]}}\n",
            "rule 'a' (1): image.renditions.0: name 'x/y' must be 1 to 100 of a-z",
        ),
        (
            "  - {name: a, image: {renditions: [{name: X, long_edge: 10}]}}\n",
            "rule 'a' (1): image.renditions.0: name 'X' must be",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 10, gravity: attention}]}}\n",
            "rule 'a' (1): image.renditions.0: gravity only applies to fit cover or fill-down",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 10, fit: cover}]}}\n",
            "rule 'a' (1): image.renditions.0: fit cover needs width and height",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 10, quality: 101}]}}\n",
            "rule 'a' (1): image.renditions.0.quality: must be between 1 and 100",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 10, format: tiff}]}}\n",
            "rule 'a' (1): image.renditions.0.format: Input should be 'webp', 'jpeg', 'avif' or",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 1}, {name: x, long_edge: 2}]}}"
            "\n",
            "rule 'a' (1): image: rendition names must be unique, and ['x'] repeat",
        ),
        (
            "  - {name: a, image: {renditions: []}}\n",
            "rule 'a' (1): image: renditions must list at least one rendition",
        ),
        ("  - {name: a, match: {kind: gif}}\n", "rule 'a' (1): match.kind: Input should be"),
        ("  - {match: {kind: pdf}}\n", "rule 1: name: is required"),
        (
            "  - {name: a, pdf: {preview: {size: 20000}}}\n",
            "rule 'a' (1): pdf.preview.size: must be between 1 and 10000",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 1}]}}\n  - {name: a}\n",
            "rules.yaml: rule names must be unique, and ['a'] repeat",
        ),
        ("  - {name: default}\n", "the rule name 'default' is reserved"),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 9}],"
            " placeholders: [phash, blurhash]}}\n",
            "rule 'a' (1): image.placeholders.1: Input should be 'thumbhash', 'dominant_color'"
            " or 'phash'",
        ),
        (
            "  - {name: a, image: {renditions: [{name: x, long_edge: 9}],"
            " placeholders: [phash, thumbhash, phash]}}\n",
            "rule 'a' (1): image: placeholders must be unique, and ['phash'] repeat",
        ),
    ],
)
def test_each_error_names_the_rule_and_the_field(rules: str, expected: str) -> None:
    assert expected in problem_in("rules:\n" + rules)


def test_avif_is_refused_when_pillow_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipelined.rules.features.check", lambda feature: feature != "avif")
    message = problem_in(
        "rules:\n  - {name: a, image: {renditions: [{name: x, long_edge: 9, format: avif}]}}\n"
    )
    assert (
        "rule 'a' (1): image.renditions.0: format avif needs a Pillow built with libavif" in message
    )


def test_a_file_that_is_not_yaml_or_not_rules_says_so(tmp_path: Path) -> None:
    assert "rules.yaml: not valid YAML" in problem_in("rules: [")
    assert "rules.yaml: rules: must be a list" in problem_in("rules: 3")
    assert "rules.yaml: cannot be read" in str(_load_error(tmp_path / "rules.yaml"))
    assert parse_rules("") == ()


def _load_error(path: Path) -> RulesError:
    with pytest.raises(RulesError) as raised:
        load_rules(path)
    return raised.value


def test_a_bad_file_is_a_config_error_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - {name: products, image: {renditions: [{name: w, long_edge: 0}]}}\n"
    )
    monkeypatch.setenv("PIPELINED_RULES_FILE", str(path))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"invalid settings: PIPELINED_RULES_FILE {path}: rule 'products' (1): "
        "image.renditions.0.long_edge: must be between 1 and 10000"
    )
    path.write_text(PRODUCTS_ONLY)
    settings = load_settings()
    assert settings.rules_file is not None
    assert [rule.name for rule in settings.rules_file.rules] == ["products"]


# -- choosing a rule ---------------------------------------------------------------------

MATCHING = rules_of(
    "  - {name: pdfs-in-docs, match: {prefix: docs/, kind: pdf}}\n"
    "  - {name: docs, match: {prefix: docs/}}\n"
    "  - {name: pngs, match: {glob: '*.png'}}\n"
    "  - {name: shots, match: {bucket: shots, glob: 'raw/*/[0-9]*.jpg'}}\n"
)


@pytest.mark.parametrize(
    ("bucket", "key", "kind", "expected"),
    [
        ("in", "docs/a.pdf", "pdf", "pdfs-in-docs"),  # the first match wins
        ("in", "docs/a.pdf", "image", "docs"),  # kind
        ("in", "docs/a.pdf", None, "docs"),  # an unknown kind matches only rules without one
        ("in", "documents/a.pdf", "pdf", "default"),  # a prefix is a prefix of the key
        ("in", "a/b/c.png", "image", "pngs"),  # "*" crosses "/"
        ("in", "a/b/c.PNG", "image", "default"),  # and is case-sensitive, as keys are
        ("shots", "raw/2026/01.jpg", "image", "shots"),
        ("other", "raw/2026/01.jpg", "image", "default"),  # bucket
        ("shots", "raw/2026/x1.jpg", "image", "default"),  # the glob covers the whole key
    ],
)
def test_select_matches_every_field_a_rule_gives(
    bucket: str, key: str, kind: str | None, expected: str
) -> None:
    assert select(MATCHING, bucket, key, kind).name == expected


def test_a_rule_without_match_matches_everything() -> None:
    catch_all = rules_of("  - {name: everything}\n")
    assert select(catch_all, "any", "thing", None).name == "everything"


def test_without_rules_every_upload_gets_the_default_rule() -> None:
    assert select((), "in", "products/x.jpg", "image") is DEFAULT_RULE
    assert DEFAULT_RULE.name == "default"


# -- what a rule does to the options -----------------------------------------------------


def test_the_default_rule_is_the_thumbnail_settings() -> None:
    base = ProcessingOptions(thumbnail_sizes=(128, 512), thumbnail_format="jpeg")
    options = DEFAULT_RULE.options(base)
    assert options == base
    assert options.image_renditions == default_renditions((128, 512), "jpeg", 82)
    assert [(r.name, r.width, r.height, r.fit) for r in options.image_renditions] == [
        ("thumb-128", 128, 128, "contain"),
        ("thumb-512", 512, 512, "contain"),
    ]
    assert options.pdf_preview_size == 1024


def test_a_rule_replaces_only_the_sections_it_gives() -> None:
    images, pdfs = rules_of(
        "  - {name: images, image: {renditions: [{name: w9, long_edge: 9, format: png}]}}\n"
        "  - {name: pdfs, pdf: {preview: {size: 300}}}\n"
    )
    base = ProcessingOptions()
    assert images.options(base).image_renditions == (
        RenditionSpec("w9", 9, 9, "contain", "center", "png", 82),
    )
    assert images.options(base).pdf_preview_size == base.pdf_preview_size
    assert pdfs.options(base).image_renditions == base.image_renditions
    assert pdfs.options(base).pdf_preview_size == 300


def test_a_rule_passes_its_placeholders_and_one_without_asks_for_none() -> None:
    avatars, products, pdfs = rules_of(
        "  - name: avatars\n"
        "    image:\n"
        "      renditions: [{name: a, width: 9, height: 9, fit: cover}]\n"
        "      placeholders: [thumbhash, dominant_color, phash]\n"
        "  - {name: products, image: {renditions: [{name: w9, long_edge: 9}]}}\n"
        "  - {name: pdfs, pdf: {preview: {size: 300}}}\n"
    )
    base = ProcessingOptions()
    assert base.placeholders == ()
    assert avatars.options(base).placeholders == ("thumbhash", "dominant_color", "phash")
    assert products.options(base).placeholders == ()
    assert pdfs.options(base).placeholders == ()
    assert DEFAULT_RULE.options(base).placeholders == ()


def test_a_rule_with_placeholders_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - name: avatars\n"
        "    match: {prefix: avatars/, kind: image}\n"
        "    image:\n"
        "      renditions: [{name: a, width: 128, height: 128, fit: cover, gravity: attention}]\n"
        "      placeholders: [thumbhash, dominant_color, phash]\n"
    )
    (avatars,) = load_rules(path).rules
    assert avatars.options(ProcessingOptions()).placeholders == (
        "thumbhash",
        "dominant_color",
        "phash",
    )


def test_a_ledger_item_from_before_rules_loads_with_the_default_rule() -> None:
    item = {"bucket": "in", "object_key": "a.jpg", "status": "processed", "version": "e"}
    assert record_from_document(item).rule == "default"

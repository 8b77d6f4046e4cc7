"""A rule's pdf section: what it may say, and the options it gives a worker."""

from __future__ import annotations

import re

import pytest

from pipelined.errors import ConfigError
from pipelined.processing import ProcessingOptions
from pipelined.rules import DEFAULT_RULE, Rule, RulesError, parse_rules


def only_rule(yaml_rule: str) -> Rule:
    (rule,) = parse_rules("rules:\n" + yaml_rule, "rules.yaml")
    return rule


def problem_in(yaml_rule: str) -> str:
    with pytest.raises(RulesError) as raised:
        parse_rules("rules:\n" + yaml_rule, "rules.yaml")
    return str(raised.value)


def test_the_documents_example_asks_for_text_two_numbered_previews_and_ocr() -> None:
    documents = only_rule(
        "  - name: documents\n"
        "    match: {kind: pdf}\n"
        "    pdf:\n"
        "      text: true\n"
        "      preview: {size: 1024, pages: 2}\n"
        "      ocr: {languages: [eng, deu]}\n"
    )
    options = documents.options(ProcessingOptions(pdf_preview_size=512))
    assert options.pdf_text is True
    assert (options.pdf_preview_size, options.pdf_preview_pages) == (1024, 2)
    assert options.pdf_ocr_languages == ("eng", "deu")


def test_the_default_rule_has_one_unnumbered_preview_text_and_no_ocr() -> None:
    options = DEFAULT_RULE.options(ProcessingOptions())
    assert options.pdf_text is True
    assert options.pdf_preview_pages is None
    assert options.pdf_ocr_languages == ()


def test_sections_left_out_are_the_defaults() -> None:
    base = ProcessingOptions(pdf_preview_size=700)
    text_only = only_rule("  - {name: bare, pdf: {text: false}}\n").options(base)
    assert text_only.pdf_text is False
    # No preview section: the default's preview, at the default's size, unnumbered.
    assert (text_only.pdf_preview_size, text_only.pdf_preview_pages) == (700, None)
    assert text_only.pdf_ocr_languages == ()
    # A preview section numbers its previews, even for one page.
    one_page = only_rule("  - {name: one, pdf: {preview: {size: 300}}}\n").options(base)
    assert (one_page.pdf_preview_size, one_page.pdf_preview_pages) == (300, 1)
    # An image rule leaves the PDF outputs alone.
    image_rule = only_rule("  - {name: img, image: {renditions: [{name: w, long_edge: 9}]}}\n")
    untouched = image_rule.options(base)
    assert (untouched.pdf_text, untouched.pdf_preview_size, untouched.pdf_preview_pages) == (
        True,
        700,
        None,
    )


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "  - {name: a, pdf: {text: false, ocr: {languages: [eng]}}}\n",
            "rule 'a' (1): pdf: ocr needs text: true, since what Tesseract reads goes in text.txt",
        ),
        (
            "  - {name: a, pdf: {ocr: {languages: []}}}\n",
            "rule 'a' (1): pdf.ocr: languages must list at least one Tesseract language, as eng",
        ),
        (
            "  - {name: a, pdf: {ocr: {languages: [eng, ../x]}}}\n",
            "rule 'a' (1): pdf.ocr.languages.1: String should match pattern",
        ),
        (
            "  - {name: a, pdf: {preview: {pages: 101}}}\n",
            "rule 'a' (1): pdf.preview.pages: must be between 1 and 100",
        ),
        ("  - {name: a, pdf: {ocr: {language: eng}}}\n", "pdf.ocr.language: is not a known field"),
    ],
)
def test_a_bad_pdf_section_names_the_rule_and_the_field(rule: str, expected: str) -> None:
    assert expected in problem_in(rule)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"pdf_preview_pages": 0}, "pdf_preview_pages must be positive"),
        ({"pdf_ocr_languages": ("eng", "x;rm")}, "must be Tesseract language names: ['x;rm']"),
        ({"job_timeout_s": 0}, "job_timeout_s must be positive"),
    ],
)
def test_options_built_directly_refuse_bad_pdf_values(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ProcessingOptions(**bad)  # type: ignore[arg-type]

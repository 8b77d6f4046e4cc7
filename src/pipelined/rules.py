"""Rules: which renditions and PDF outputs an upload gets, chosen by bucket, key and kind.

``PIPELINED_RULES_FILE`` names a YAML file of rules (docs/processing.md, "Rules"). It is read
and validated once, at start-up; a job only picks its rule (``select``) and turns it into the
ProcessingOptions its worker gets (``Rule.options``). The first rule that matches wins; an
upload that none matches, or every upload when there is no file, gets ``DEFAULT_RULE``: the
THUMBNAIL_SIZES and THUMBNAIL_FORMAT thumbnails, the PDF text and a 1024 px preview.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from PIL import features
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelined.processing import ProcessingOptions
from pipelined.processing.options import (
    DEFAULT_QUALITY,
    OCR_LANGUAGE,
    RENDITION_NAME,
    Fit,
    Gravity,
    OutputFormatName,
    Placeholder,
    RenditionSpec,
)
from pipelined.records import DEFAULT_RULE_NAME

MAX_EDGE = 10_000  # the same bound as THUMBNAIL_SIZES
Kind = Literal["image", "pdf"]


class RulesError(ValueError):
    """The rules file is unreadable or invalid; the message names the rule and the field.

    A ValueError, so that the settings validator reports it as PIPELINED_RULES_FILE's problem
    (and start-up stops with exit 2, like any other bad setting)."""


def _between(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


Edge = Annotated[int, _between(1, MAX_EDGE)]


class _Strict(BaseModel):
    # A misspelt field ("long-edge", "qualty") would otherwise be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """Every field given must match; a rule without any matches every upload."""

    bucket: str | None = Field(default=None, min_length=1)
    prefix: str | None = Field(default=None, min_length=1)
    glob: str | None = Field(default=None, min_length=1)
    kind: Kind | None = None

    def matches(self, bucket: str, key: str, kind: str | None) -> bool:
        # fnmatchcase: S3 and GCS keys are case-sensitive, and "*" matches across "/".
        return (
            (self.bucket is None or bucket == self.bucket)
            and (self.prefix is None or key.startswith(self.prefix))
            and (self.glob is None or fnmatch.fnmatchcase(key, self.glob))
            and (self.kind is None or kind == self.kind)
        )


class Rendition(_Strict):
    name: str
    long_edge: Edge | None = None
    width: Edge | None = None
    height: Edge | None = None
    fit: Fit = "contain"
    gravity: Gravity | None = None
    format: OutputFormatName = "webp"
    quality: Annotated[int, _between(1, 100)] | None = None

    @model_validator(mode="after")
    def _check(self) -> Rendition:
        if not RENDITION_NAME.fullmatch(self.name):
            raise ValueError(
                f"name {self.name!r} must be 1 to 100 of a-z, 0-9, '.', '_' and '-': "
                "it becomes the artifact's file name"
            )
        box = (self.width, self.height)
        has_box = box != (None, None)
        if (self.long_edge is None) == (not has_box) or (has_box and None in box):
            raise ValueError("give either long_edge, or width and height together")
        if self.fit != "contain" and self.long_edge is not None:
            raise ValueError(f"fit {self.fit} needs width and height: it fills that box")
        if self.gravity is not None and self.fit == "contain":
            raise ValueError("gravity only applies to fit cover or fill-down, which crop")
        if self.format == "avif" and not features.check("avif"):
            raise ValueError("format avif needs a Pillow built with libavif, and this one is not")
        return self

    def spec(self) -> RenditionSpec:
        """The plain value the worker gets. A long edge is a square box, fitted inside."""
        width = self.long_edge or self.width
        height = self.long_edge or self.height
        assert width is not None  # _check
        assert height is not None
        quality = DEFAULT_QUALITY if self.quality is None else self.quality
        return RenditionSpec(
            self.name, width, height, self.fit, self.gravity or "center", self.format, quality
        )


class ImageRules(_Strict):
    renditions: tuple[Rendition, ...]
    placeholders: tuple[Placeholder, ...] = ()

    # Lengths are checked here, not with Field(min_length): pydantic would also report a list
    # whose one item is invalid as "too short", a second, false error.
    @model_validator(mode="after")
    def _check_unique_names(self) -> ImageRules:
        if not self.renditions:
            raise ValueError("renditions must list at least one rendition")
        names = [rendition.name for rendition in self.renditions]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rendition names must be unique, and {repeated} repeat")
        asked = list(self.placeholders)
        repeated = sorted({name for name in asked if asked.count(name) > 1})
        if repeated:
            raise ValueError(f"placeholders must be unique, and {repeated} repeat")
        return self


class PdfPreview(_Strict):
    size: Edge = 1024
    pages: Annotated[int, _between(1, 100)] = 1


class PdfOcr(_Strict):
    languages: tuple[Annotated[str, Field(pattern=f"^{OCR_LANGUAGE.pattern}$")], ...]

    @model_validator(mode="after")
    def _check_some(self) -> PdfOcr:
        if not self.languages:
            raise ValueError("languages must list at least one Tesseract language, as eng")
        return self


class PdfRules(_Strict):
    text: bool = True
    preview: PdfPreview | None = None
    ocr: PdfOcr | None = None

    @model_validator(mode="after")
    def _check_ocr_has_text(self) -> PdfRules:
        if self.ocr is not None and not self.text:
            raise ValueError("ocr needs text: true, since what Tesseract reads goes in text.txt")
        return self

    def options(self, base: ProcessingOptions) -> ProcessingOptions:
        """base with this section's PDF outputs; a preview section numbers the previews."""
        size, pages = base.pdf_preview_size, base.pdf_preview_pages
        if self.preview is not None:
            size, pages = self.preview.size, self.preview.pages
        return replace(
            base,
            pdf_text=self.text,
            pdf_preview_size=size,
            pdf_preview_pages=pages,
            pdf_ocr_languages=() if self.ocr is None else self.ocr.languages,
        )


class Rule(_Strict):
    """A section left out (image, pdf, or pdf.preview) is the default rule's."""

    name: str = Field(min_length=1, max_length=100)
    match: Match = Match()
    image: ImageRules | None = None
    pdf: PdfRules | None = None

    def options(self, base: ProcessingOptions) -> ProcessingOptions:
        """The options a worker processes an upload of this rule with; base is the default."""
        renditions, placeholders = base.renditions, base.placeholders
        if self.image is not None:
            renditions = tuple(rendition.spec() for rendition in self.image.renditions)
            placeholders = self.image.placeholders
        options = replace(base, renditions=renditions, placeholders=placeholders)
        return options if self.pdf is None else self.pdf.options(options)


DEFAULT_RULE = Rule(name=DEFAULT_RULE_NAME)
"""No sections of its own: the options built from the settings, unchanged."""


class RulesDocument(_Strict):
    """The YAML file's schema."""

    rules: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _check_names(self) -> RulesDocument:
        names = [rule.name for rule in self.rules]
        if DEFAULT_RULE_NAME in names:
            # Records say "default" for uploads no rule matched; a rule of that name would
            # make them ambiguous.
            raise ValueError(f"the rule name {DEFAULT_RULE_NAME!r} is reserved for the default")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique, and {repeated} repeat")
        return self


class RulesFile(_Strict):
    """A validated rules file, as the settings hold it."""

    path: str
    rules: tuple[Rule, ...]


def select(rules: Sequence[Rule], bucket: str, key: str, kind: str | None) -> Rule:
    """The first rule that matches the upload, else the default rule."""
    return next((rule for rule in rules if rule.match.matches(bucket, key, kind)), DEFAULT_RULE)


def load_rules(path: str | os.PathLike[str]) -> RulesFile:
    """Read, validate and check a rules file; RulesError says what is wrong, and where."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError(f"{shown}: cannot be read: {error}") from None
    return RulesFile(path=shown, rules=parse_rules(text, shown))


def parse_rules(text: str, shown: str = "rules") -> tuple[Rule, ...]:
    """The rules in text, validated against the schema."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RulesError(f"{shown}: not valid YAML: {' '.join(str(error).split())}") from None
    if data is None:
        data = {}
    try:
        return RulesDocument.model_validate(data).rules
    except ValidationError as error:
        problems = "; ".join(_describe(detail, data) for detail in error.errors())
        raise RulesError(f"{shown}: {problems}") from None


def _rule_label(name: object, number: int) -> str:
    return f"rule {name!r} ({number})" if isinstance(name, str) else f"rule {number}"


def _describe(detail: Any, data: object) -> str:
    """One pydantic error as "rule 'products' (2): image.renditions.0.long_edge: message"."""
    location = list(detail["loc"])
    message = str(detail["msg"]).removeprefix("Value error, ")
    if detail["type"] == "extra_forbidden":
        message = "is not a known field"
    elif detail["type"] == "missing":
        message = "is required"
    elif detail["type"] in ("tuple_type", "list_type"):
        message = "must be a list"
    where = []
    if location[:1] == ["rules"] and len(location) > 1 and isinstance(location[1], int):
        index = location[1]
        where.append(_rule_label(_rule_name(data, index), index + 1))
        location = location[2:]
    # Literal and union errors add the type tried ("literal['webp']"), which says nothing here.
    field = ".".join(str(part) for part in location if "[" not in str(part))
    if field:
        where.append(field)
    return ": ".join([*where, message])


def _rule_name(data: object, index: int) -> object:
    rules = data.get("rules") if isinstance(data, dict) else None
    if isinstance(rules, list) and index < len(rules) and isinstance(rules[index], dict):
        return rules[index].get("name")
    return None

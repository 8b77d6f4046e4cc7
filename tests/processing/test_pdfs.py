"""PDF text, metadata, preview and the ways PDFs go wrong."""

import io
from collections.abc import Iterator
from pathlib import Path

import pypdfium2  # type: ignore[import-untyped]  # ships no type information
import pytest
from pypdf import PdfReader, PdfWriter

from pipelined import samples
from pipelined.errors import (
    CorruptFileError,
    LimitExceededError,
    PermanentError,
    UnsupportedContentError,
)
from pipelined.processing import ProcessingOptions, ProcessResult
from pipelined.processing.standing import close_standing_child

from .builders import artifact_image, pdf_text, pdf_with_pages, run

PAGES = ["Alpha page (one)\nsecond line \\ with a backslash", "Beta page", "Gamma page"]


def text_of(result: ProcessResult) -> str:
    artifact = next(a for a in result.artifacts if a.name == "text.txt")
    assert artifact.content_type == "text/plain; charset=utf-8"
    return Path(artifact.path).read_text(encoding="utf-8")


def encrypted(body: bytes, user_password: str, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(body)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def aes_available() -> bool:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


ALGORITHMS = [
    "RC4-128",
    pytest.param(
        "AES-256",
        marks=pytest.mark.skipif(not aes_available(), reason="pypdf needs cryptography for AES"),
    ),
]


def test_text_is_extracted_page_by_page_with_form_feeds(tmp_path: Path) -> None:
    result = run(tmp_path, samples.text_pdf(PAGES), name="report.pdf")

    pages = text_of(result).split("\f")
    assert pages == ["Alpha page (one)\nsecond line \\ with a backslash", "Beta page", "Gamma page"]
    assert result.kind == "pdf"
    assert result.metadata["page_count"] == 3
    assert result.metadata["char_count"] == len(text_of(result))


def test_document_metadata(tmp_path: Path) -> None:
    body = samples.text_pdf(["x"], title="Résumé ✓ (draft)", author="Ann O'Nymous")
    metadata = run(tmp_path, body).metadata

    assert metadata["title"] == "Résumé ✓ (draft)"
    assert metadata["author"] == "Ann O'Nymous"
    assert metadata["producer"] == "pipelined.samples"
    assert metadata["creator"] == "pipelined"
    assert metadata["creation_date"] == "2024-01-02T03:04:05+01:00"
    assert metadata["encrypted"] is False
    assert "preview_error" not in metadata


def test_broken_date_and_odd_strings_do_not_fail_the_document(tmp_path: Path) -> None:
    body = samples.text_pdf(["x"])
    # Same-length edits keep the cross-reference offsets valid.
    body = body.replace(b"D:20240102030405", b"D:2024XX02030405")
    # UTF-16 with a lone surrogate: not encodable as UTF-8 as it stands.
    body = body.replace(b"/Producer (pipelined.samples)", b"/Producer <FEFFD8000041>     ")
    metadata = run(tmp_path, body).metadata

    assert metadata["creation_date"] is None
    producer = metadata["producer"]
    assert isinstance(producer, str)
    assert producer.endswith("A")
    assert producer.isprintable()
    producer.encode("utf-8")
    assert metadata["title"] == "Pipelined sample"


def test_preview_is_the_first_page_at_the_configured_size(tmp_path: Path) -> None:
    options = ProcessingOptions(pdf_preview_size=400, thumbnail_format="jpeg")
    result = run(tmp_path, samples.text_pdf(PAGES), options)

    preview = next(a for a in result.artifacts if a.name.startswith("preview"))
    assert (preview.name, preview.content_type) == ("preview-400.jpg", "image/jpeg")
    assert preview.height == 400  # Letter portrait: the long edge is the height
    assert abs(preview.width - 400 * 612 / 792) <= 1  # type: ignore[operator]
    picture = artifact_image(result, "preview-400.jpg").convert("L")
    assert picture.size == (preview.width, preview.height)
    # White paper with dark text near the top-left, where the first line is drawn.
    assert picture.getpixel((picture.width - 5, picture.height - 5)) > 240  # type: ignore[operator]
    top_left_text = picture.crop((0, 0, picture.width // 2, picture.height // 6))
    assert top_left_text.getextrema()[0] < 100  # type: ignore[operator]


@pytest.fixture
def own_standing_child() -> Iterator[None]:
    """The previews' standing child is forked during the test, with its patches in place,
    and is gone after it: no other test renders with them."""
    close_standing_child()
    yield
    close_standing_child()


@pytest.mark.usefixtures("own_standing_child")
def test_preview_failure_keeps_the_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_document(path: str) -> None:
        raise pypdfium2.PdfiumError("Failed to load document (PDFium: Data format error).")

    monkeypatch.setattr(pypdfium2, "PdfDocument", failing_document)
    result = run(tmp_path, samples.text_pdf(PAGES))

    assert [a.name for a in result.artifacts] == ["text.txt"]
    assert text_of(result).startswith("Alpha page")
    assert result.metadata["preview_error"] == (
        "preview failed: Failed to load document (PDFium: Data format error)."
    )


def previews_of(result: ProcessResult) -> list[tuple[str, int | None, int | None]]:
    return [(a.name, a.width, a.height) for a in result.artifacts if a.name.startswith("preview")]


def test_a_rule_preview_section_gives_numbered_previews_of_the_first_pages(
    tmp_path: Path,
) -> None:
    options = ProcessingOptions(pdf_preview_size=300, pdf_preview_pages=2)
    result = run(tmp_path, samples.text_pdf(PAGES), options)

    width = round(300 * 612 / 792)  # Letter portrait
    assert previews_of(result) == [
        ("preview-300-p1.webp", width, 300),
        ("preview-300-p2.webp", width, 300),
    ]
    first, second = (artifact_image(result, f"preview-300-p{n}.webp") for n in (1, 2))
    assert first.size == second.size == (width, 300)
    assert first.tobytes() != second.tobytes()  # each its own page, not page 1 twice
    assert "preview_error" not in result.metadata


def test_preview_pages_beyond_the_document_give_one_preview_a_page(tmp_path: Path) -> None:
    options = ProcessingOptions(pdf_preview_size=200, pdf_preview_pages=10)
    result = run(tmp_path, samples.text_pdf(PAGES), options)

    assert [name for name, _, _ in previews_of(result)] == [
        "preview-200-p1.webp",
        "preview-200-p2.webp",
        "preview-200-p3.webp",
    ]
    assert "preview_error" not in result.metadata


def test_text_false_writes_no_text_and_extracts_none(tmp_path: Path) -> None:
    # Page 2 needs a codec this service lacks: extracting its text would say so in text_error.
    jbig2 = (b"\x97JB2\r\n\x1a\n", b"/Filter /JBIG2Decode")
    body = pdf_with_pages([(pdf_text("Plain page"), b""), jbig2])
    result = run(tmp_path, body, ProcessingOptions(pdf_text=False))

    assert [a.name for a in result.artifacts] == ["preview-1024.webp"]
    assert not (tmp_path / "out" / "text.txt").exists()
    assert result.metadata["page_count"] == 2
    assert "encrypted" in result.metadata
    assert "char_count" not in result.metadata
    assert "text_error" not in result.metadata


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_user_password_is_a_permanent_error_about_the_password(
    tmp_path: Path, algorithm: str
) -> None:
    body = encrypted(samples.text_pdf(PAGES), user_password="let-me-in", algorithm=algorithm)
    with pytest.raises(UnsupportedContentError) as raised:
        run(tmp_path, body)
    assert isinstance(raised.value, PermanentError)
    assert str(raised.value) == "encrypted PDF: a password is required"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_owner_password_only_is_processed(tmp_path: Path, algorithm: str) -> None:
    body = encrypted(samples.text_pdf(PAGES), user_password="", algorithm=algorithm)
    result = run(tmp_path, body)

    assert result.metadata["encrypted"] is True
    assert text_of(result).split("\f")[1] == "Beta page"
    assert result.metadata["title"] == "Pipelined sample"
    assert "preview_error" not in result.metadata
    assert any(a.name == "preview-1024.webp" for a in result.artifacts)


def test_too_many_pages_is_a_limit(tmp_path: Path) -> None:
    with pytest.raises(LimitExceededError, match=r"3 pages, over the max_pages limit of 2"):
        run(tmp_path, samples.text_pdf(PAGES), ProcessingOptions(max_pages=2))


def test_a_lying_page_count_is_not_believed(tmp_path: Path) -> None:
    body = samples.text_pdf(PAGES).replace(b"/Count 3", b"/Count 9")
    result = run(tmp_path, body, ProcessingOptions(max_pages=5))
    assert result.metadata["page_count"] == 3


def test_page_tree_cycle_is_corrupt(tmp_path: Path) -> None:
    body = samples.text_pdf(PAGES).replace(b"/Kids [5 0 R", b"/Kids [2 0 R")
    with pytest.raises(CorruptFileError, match=r"^corrupt PDF: .*cyclic"):
        run(tmp_path, body)


def test_cross_reference_loop_does_not_hang(tmp_path: Path) -> None:
    body = samples.text_pdf(PAGES)
    start = body.index(b"startxref\n") + len(b"startxref\n")
    xref_offset = body[start : body.index(b"\n", start)]
    looping = body.replace(b"/Root 1 0 R", b"/Prev " + xref_offset + b" /Root 1 0 R")
    # pypdf notices the loop and uses the table it already read.
    assert text_of(run(tmp_path, looping)).split("\f")[2] == "Gamma page"


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_pdf_is_corrupt(tmp_path: Path, keep: float) -> None:
    body = samples.text_pdf(PAGES)
    with pytest.raises(CorruptFileError, match=r"^corrupt PDF: "):
        run(tmp_path, body[: int(len(body) * keep)])


def test_pdf_without_pages_is_corrupt(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match="no pages"):
        run(tmp_path, samples.text_pdf([]))


def test_pdf_header_followed_by_garbage_is_corrupt(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match=r"^corrupt PDF: "):
        run(tmp_path, b"%PDF-1.7\n" + b"\x00garbage (" * 200)

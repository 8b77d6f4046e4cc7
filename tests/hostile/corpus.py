"""The hostile corpus: files made to hurt the processors, and awkward ones from the wild.

Each Case is an upload (a key whose extension may lie, and bytes generated here) with the one
outcome it must end in: "processed", with a check on the metadata and artifacts, or "failed",
with a regular expression its reason must match. The same cases and checks run against the
worker pool (test_corpus_processing.py) and against a running daemon (test_corpus_daemon.py),
under the limits below. Bodies are built on first use and kept: the whole corpus is about
10 MB, made in about three seconds.
"""

import functools
import io
import itertools
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import pillow_heif
from PIL import Image, ImageCms
from pypdf import PdfReader, PdfWriter

from pipelined import samples
from pipelined.processing.images import IMAGE_METADATA_KEYS
from tests.hostile import builders as b

# The limits the corpus is judged under, shared by both layers.
MAX_PIXELS = 50_000_000
MAX_FRAMES = 1_000
MAX_PAGES = 100
MAX_OBJECT_BYTES = 4 * 1024 * 1024  # daemon only: checked from the object size
WORKER_MEMORY_MB = 512
THUMBNAIL_SIZES = (256, 1024)
# Processing layer: the daemon passes the default preview deadline (10 s); here a shorter
# one keeps the suite fast. Either way the job limit below must be longer.
PREVIEW_TIMEOUT_S = 3.0
PROCESSING_JOB_TIMEOUT_S = 10.0
DAEMON_JOB_TIMEOUT_S = 20.0

Expect = Literal["processed", "failed"]
Layer = Literal["both", "daemon"]

# Thumbnails went through a lossy codec; colours may move this much.
TOLERANCE = 28


@dataclass(frozen=True)
class Outcome:
    """What a processed case produced, read back the same way from either layer."""

    metadata: Mapping[str, Any]
    artifacts: Mapping[str, bytes]  # artifact name ("thumb-256.webp") -> its bytes

    def image(self, name_prefix: str) -> Image.Image:
        """The one artifact whose name starts with name_prefix, decoded."""
        (name,) = [name for name in self.artifacts if name.startswith(name_prefix)]
        with Image.open(io.BytesIO(self.artifacts[name])) as picture:
            picture.load()
            return picture

    def text(self) -> str:
        return self.artifacts["text.txt"].decode("utf-8")


Check = Callable[[Outcome], None]


@dataclass(frozen=True)
class Case:
    name: str
    key: str
    build: Callable[[], bytes] = field(repr=False)
    expect: Expect
    reason: str | None = None  # for "failed": re.search()ed in the recorded reason
    check: Check | None = field(default=None, repr=False)  # for "processed"
    options: Mapping[str, Any] = field(default_factory=dict)  # processing layer only
    layer: Layer = "both"
    note: str = ""  # what the case is about, for the docs table

    @property
    def body(self) -> bytes:
        return _body(self.name, self.build)


@functools.cache
def _body(name: str, build: Callable[[], bytes]) -> bytes:
    return build()


# -- checks --------------------------------------------------------------------------------


def close_to(actual: object, expected: tuple[int, ...], tolerance: int = TOLERANCE) -> bool:
    assert isinstance(actual, tuple), actual
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


def has_metadata(**expected: object) -> Check:
    def check(outcome: Outcome) -> None:
        for name, value in expected.items():
            assert outcome.metadata.get(name) == value, (name, outcome.metadata)
        if "format" in outcome.metadata:  # an image: nothing beyond the documented keys
            assert set(outcome.metadata) <= IMAGE_METADATA_KEYS, outcome.metadata

    return check


def all_of(*checks: Check) -> Check:
    def check(outcome: Outcome) -> None:
        for each in checks:
            each(outcome)

    return check


def thumbnail_sizes(**sizes: tuple[int, int]) -> Check:
    """thumbnail_sizes(t256=(256, 192)): the decoded thumbnail of each size has this size."""

    def check(outcome: Outcome) -> None:
        for name, size in sizes.items():
            assert outcome.image(f"thumb-{name.removeprefix('t')}.").size == size

    return check


def marker_top_left(outcome: Outcome) -> None:
    """The upright samples.photo_jpeg picture has its MARKER_RGB square top-left."""
    picture = outcome.image("thumb-256.").convert("RGB")
    inset = max(1, min(picture.size) // 40)
    corners = [
        (inset, inset),
        (picture.width - 1 - inset, inset),
        (inset, picture.height - 1 - inset),
        (picture.width - 1 - inset, picture.height - 1 - inset),
    ]
    marked = [close_to(picture.getpixel(xy), samples.MARKER_RGB) for xy in corners]
    assert marked == [True, False, False, False], marked


def no_metadata_in_thumbnails(outcome: Outcome) -> None:
    for name, data in outcome.artifacts.items():
        assert b"GPS" not in data, name
        assert b"Exif" not in data, name
        with Image.open(io.BytesIO(data)) as picture:
            assert len(picture.getexif()) == 0, name
            assert not {"exif", "xmp", "icc_profile"} & picture.info.keys(), name


def no_location_in_metadata(outcome: Outcome) -> None:
    keys = " ".join(outcome.metadata).lower()
    assert not any(word in keys for word in ("gps", "lat", "lon", "location")), keys


def cmyk_colours(outcome: Outcome) -> None:
    picture = outcome.image("thumb-256.").convert("RGB")
    y = picture.height // 2
    assert close_to(picture.getpixel((picture.width // 8, y)), (0, 255, 255))  # cyan
    assert close_to(picture.getpixel((picture.width * 7 // 8, y)), (255, 255, 0))  # yellow


def still_a_ramp(outcome: Outcome) -> None:
    """A 16-bit grey ramp must come out as a ramp: not clipped into a black-to-white step."""
    picture = outcome.image("thumb-256.").convert("L")
    middle = picture.height // 2
    row = [cast(int, picture.getpixel((x, middle))) for x in range(picture.width)]
    assert row[0] <= 8, row
    assert row[-1] >= 247, row
    assert all(later >= earlier - 3 for earlier, later in itertools.pairwise(row)), row
    assert len(set(row)) >= 128, "a ramp has many levels, a clipped one two"


def alpha_kept_or_flattened(outcome: Outcome) -> None:
    """samples.transparent_png: alpha kept in WebP, flattened onto white in JPEG."""
    picture = outcome.image("thumb-256.")
    clear = (picture.width - 4, picture.height // 2)  # right third: fully transparent
    opaque = (4, picture.height // 2)
    if picture.format == "JPEG":
        assert picture.mode == "RGB"
        assert close_to(picture.getpixel(clear), (255, 255, 255))
    else:
        assert picture.mode == "RGBA"
        assert picture.getpixel(clear)[3] == 0  # type: ignore[index]
        assert picture.getpixel(opaque)[3] == 255  # type: ignore[index]


def gradient_at_the_limit(outcome: Outcome) -> None:
    """big_rgba_png: red grows left to right, left half opaque, right half alpha 64."""
    picture = outcome.image("thumb-1024.")
    assert picture.size == (1024, 1024)
    assert picture.mode == "RGBA"
    left = cast(tuple[int, ...], picture.getpixel((100, 500)))
    right = cast(tuple[int, ...], picture.getpixel((900, 500)))
    assert left[0] < 50, left
    assert right[0] > 200, right
    assert left[3] == 255, left
    assert abs(right[3] - 64) <= 4, right


def has_text(*fragments: str) -> Check:
    def check(outcome: Outcome) -> None:
        text = outcome.text()
        for fragment in fragments:
            assert fragment in text, (fragment, text)

    return check


def has_preview(outcome: Outcome) -> None:
    assert "preview_error" not in outcome.metadata, outcome.metadata
    assert outcome.image("preview-1024.").size[1] == 1024


def preview_failed(pattern: str) -> Check:
    def check(outcome: Outcome) -> None:
        assert re.search(pattern, str(outcome.metadata.get("preview_error"))), outcome.metadata
        assert not any(name.startswith("preview-") for name in outcome.artifacts)
        assert "text.txt" in outcome.artifacts

    return check


def printable_metadata(outcome: Outcome) -> None:
    for name in ("title", "author", "producer", "creator"):
        value = outcome.metadata.get(name)
        assert value is None or (isinstance(value, str) and value.isprintable()), (name, value)
    assert outcome.metadata["author"] == "Fran\ufffdois"


# -- bodies --------------------------------------------------------------------------------


def photo(orientation: int = 1, gps: bool = False) -> bytes:
    return samples.photo_jpeg(320, 240, orientation=orientation, gps=gps)


def small_png() -> bytes:
    return b.encoded(b.rgb_picture((64, 48)), "PNG")


def cmyk_jpeg() -> bytes:
    picture = Image.new("CMYK", (128, 64), (255, 0, 0, 0))  # cyan
    picture.paste((0, 0, 255, 0), (64, 0, 128, 64))  # yellow
    return b.encoded(picture, "JPEG", quality=95)


def grey_ramp_16_bit() -> bytes:
    """1024 x 32, 16-bit grey: value 64 * x, from black to nearly full scale."""
    row = struct.pack(">1024H", *(64 * x for x in range(1024)))
    return b.png_repeating_first_row(row, 32, bit_depth=16, colour_type=0, channels=1)


def big_rgba_png() -> bytes:
    """7071 x 7071 RGBA (49,999,041 pixels, just under 50 M) with an sRGB ICC profile:
    200 MB decoded, 200 KB on disk."""
    width = 7071
    row = bytearray()
    for x in range(width):
        level = x * 255 // (width - 1)
        row += bytes((level, 255 - level, 128, 255 if x < width // 2 else 64))
    body = b.png_repeating_first_row(bytes(row), width, bit_depth=8, colour_type=6, channels=4)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    # iCCP: profile name, NUL, compression method 0, then the deflated profile.
    return b.png_with_chunk_before_idat(body, b"iCCP", b"sRGB\x00\x00" + zlib.compress(profile))


def palette_gif_with_transparency() -> bytes:
    picture = Image.new("P", (40, 40), 0)
    picture.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    picture.paste(1, (20, 0, 40, 40))
    return b.encoded(picture, "GIF", transparency=1)


def heic_photo() -> bytes:
    pillow_heif.register_heif_opener()
    return b.encoded(b.rgb_picture((96, 64)), "HEIF", quality=80)


def avif_photo() -> bytes:
    return b.encoded(b.rgb_picture((96, 64)), "AVIF", quality=80)


def multipage_tiff() -> bytes:
    pages = [b.rgb_picture((40, 30)) for _ in range(3)]
    return b.encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def animated_webp() -> bytes:
    frame = b.rgb_picture((32, 32))
    rest = [frame.rotate(90), frame.rotate(180)]
    return b.encoded(frame, "WEBP", save_all=True, append_images=rest, duration=50)


def metadata_chunk_bomb() -> bytes:
    """A PNG whose zTXt comment inflates to 100 MiB."""
    return b.png_with_chunk_before_idat(
        small_png(), b"zTXt", b"Comment\x00\x00" + b.zlib_of_zeros(100)
    )


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # A fixed timestamp keeps the bytes, and so the recorded reason, the same every run.
        archive.writestr(zipfile.ZipInfo("payload.txt", (2024, 1, 2, 3, 4, 6)), "not a picture")
    return buffer.getvalue()


SVG_WITH_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&x;</text></svg>\n'
)
HTML = (
    b"<!DOCTYPE html>\n<html><head><title>Invoice</title></head>"
    b"<body><script>alert(1)</script><p>Your invoice</p></body></html>\n"
)


def encrypted_pdf(user_password: str, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(b.simple_pdf(["Sealed text"]))))
    writer.encrypt(user_password=user_password, owner_password="owner-only", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _one_page_objects(contents: bytes, resources: bytes = b"") -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b.FONT,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 3 0 R >> %s>> /Contents 5 0 R >>" % resources,
        contents,
    ]


def xref_prev_loop() -> bytes:
    """Two cross-reference sections whose /Prev entries point at each other."""
    body, offsets = b.pdf_objects(_one_page_objects(b.stream(b.text_content("Loop survivor"))))
    first = len(body)
    first_section = b.xref_table(offsets)
    first_trailer = b"trailer\n<< /Size 6 /Root 1 0 R /Prev %010d >>\n"
    second = first + len(first_section) + len(first_trailer % 0)
    second_section = b"xref\n0 1\n0000000000 65535 f \n"
    second_trailer = b"trailer\n<< /Size 6 /Root 1 0 R /Prev %010d >>\n" % first
    return (
        body
        + first_section
        + first_trailer % second
        + second_section
        + second_trailer
        + b"startxref\n%d\n%%%%EOF\n" % second
    )


NESTED_ARRAYS = b"[" * 50_000 + b"]" * 50_000


def nested_arrays_in_page() -> bytes:
    return b.simple_pdf(["deep"], page_extra=b"/Deep " + NESTED_ARRAYS + b" ")


def nested_arrays_in_content() -> bytes:
    content = b.text_content("deep") + b" " + NESTED_ARRAYS + b" pop"
    return b.pdf(_one_page_objects(b.stream(content)))


def flate_bomb_content() -> bytes:
    """A page content stream of 1 GiB of zeros, about 1 MiB compressed."""
    bomb = b.zlib_of_zeros(1024)
    return b.pdf(_one_page_objects(b.stream(bomb, b"/Filter /FlateDecode ")))


def flate_bomb_image() -> bytes:
    """The same gigabyte as a 32768 x 32768 greyscale image drawn over the page."""
    bomb = b.zlib_of_zeros(1024)
    image = b.stream(
        bomb,
        b"/Type /XObject /Subtype /Image /Width 32768 /Height 32768 /ColorSpace /DeviceGray"
        b" /BitsPerComponent 8 /Filter /FlateDecode ",
    )
    content = b.stream(b.text_content("Under the image") + b" q 612 0 0 792 0 0 cm /Im Do Q")
    return b.pdf([*_one_page_objects(content, b"/XObject << /Im 6 0 R >> "), image])


def flate_bomb_annotation() -> bytes:
    """The gigabyte as an annotation's appearance: pypdf's text extraction never reads it,
    pdfium's renderer does, and aborts the process when it cannot allocate the result."""
    appearance = b.stream(
        b.zlib_of_zeros(1024),
        b"/Type /XObject /Subtype /Form /BBox [0 0 100 100] /Filter /FlateDecode ",
    )
    objects = _one_page_objects(b.stream(b.text_content("Text beside the annotation")))
    objects[3] = objects[3].replace(b"/Contents 5 0 R", b"/Contents 5 0 R /Annots [6 0 R]")
    objects.append(
        b"<< /Type /Annot /Subtype /Square /Rect [100 100 200 200] /AP << /N 7 0 R >> >>"
    )
    objects.append(appearance)
    return b.pdf(objects)


def page_tree_cycle() -> bytes:
    """The root /Pages node lists a child /Pages node that lists the root again."""
    objects = _one_page_objects(b.stream(b.text_content("cycle")))
    objects[1] = b"<< /Type /Pages /Kids [4 0 R 6 0 R] /Count 2 >>"
    objects.append(b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>")
    return b.pdf(objects)


def self_drawing_form() -> bytes:
    """A form XObject that draws itself: infinite recursion for a naive interpreter."""
    form = b.stream(
        b.text_content("again", y=700) + b" /X Do",
        b"/Type /XObject /Subtype /Form /BBox [0 0 612 792]"
        b" /Resources << /Font << /F1 3 0 R >> /XObject << /X 6 0 R >> >> ",
    )
    content = b.stream(b.text_content("form") + b" /X Do")
    return b.pdf([*_one_page_objects(content, b"/XObject << /X 6 0 R >> "), form])


def renderer_trap() -> bytes:
    """A tiling pattern with a 1e-4 point step filling the page: pdfium would paint it for
    hours; the text layer is ordinary."""
    pattern = b.stream(
        b"0 0 1 1 re f",
        b"/Type /Pattern /PatternType 1 /PaintType 1 /TilingType 1 /BBox [0 0 1 1]"
        b" /XStep 0.0001 /YStep 0.0001 /Resources << >> ",
    )
    content = b.stream(
        b.text_content("Text before the trap") + b" /Pattern cs /P scn 0 0 612 792 re f"
    )
    return b.pdf([*_one_page_objects(content, b"/Pattern << /P 6 0 R >> "), pattern])


def non_utf8_metadata() -> bytes:
    info = (
        b"<< /Title (\xff\xfe\xd8\x00bad\x80) /Author (Fran\xe7ois \x00\x01)"
        b" /Producer <FEFFD800> /CreationDate (D:99999999) >>"
    )
    return b.simple_pdf(["metadata test"], info=info)


def truncated_pdf() -> bytes:
    whole = b.simple_pdf(["first page text", "second page text"])
    return whole[: len(whole) // 2]


def no_pages() -> bytes:
    return b.pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])


def with_mediabox(box: bytes) -> bytes:
    return b.simple_pdf(["odd page"]).replace(b"/MediaBox [0 0 612 792]", b"/MediaBox " + box)


# -- the corpus ----------------------------------------------------------------------------

PIXELS = rf"over the max_pixels limit of {MAX_PIXELS}$"
UNSUPPORTED = r"^unsupported content: not an image or PDF \(starts with "

CASES: tuple[Case, ...] = (
    # Not an image or a PDF, whatever the name says.
    Case("zero-bytes", "in/empty.jpg", lambda: b"", "failed", r"^unsupported content: empty file$"),
    Case(
        "text-named-jpg",
        "in/notes.jpg",
        lambda: b"Meeting notes\n- buy milk\n",
        "failed",
        UNSUPPORTED,
    ),
    Case("html-named-pdf", "in/invoice.pdf", lambda: HTML, "failed", UNSUPPORTED),
    Case("zip-named-png", "in/archive.png", zip_archive, "failed", UNSUPPORTED),
    Case(
        "svg-with-entity-named-png", "in/logo.png", lambda: SVG_WITH_ENTITY, "failed", UNSUPPORTED
    ),
    Case(
        "text-starting-bm-named-bmp",
        "in/car.bmp",
        lambda: b"BMW 320d, 2019, 80000 km",
        "failed",
        UNSUPPORTED,
    ),
    # Real files under a wrong name: the bytes decide.
    Case(
        "png-named-jpg",
        "in/photo.jpg",
        small_png,
        "processed",
        check=all_of(
            has_metadata(format="PNG", width=64, height=48), thumbnail_sizes(t256=(64, 48))
        ),
    ),
    Case(
        "jpeg-named-pdf",
        "in/scan.pdf",
        photo,
        "processed",
        check=has_metadata(format="JPEG", width=320, height=240),
    ),
    Case(
        "pdf-named-png",
        "in/chart.png",
        lambda: b.simple_pdf(["Actually a PDF"]),
        "processed",
        check=all_of(has_metadata(page_count=1), has_text("Actually a PDF")),
    ),
    # Broken images.
    Case("truncated-jpeg", "in/broken.jpg", samples.corrupt_jpeg, "failed", r"^corrupt JPEG: "),
    Case(
        "truncated-png",
        "in/broken.png",
        lambda: small_png()[:-40],
        "failed",
        r"^corrupt PNG: image file is truncated",
    ),
    Case(
        "png-bad-crc",
        "in/crc.png",
        lambda: small_png()[:40] + b"\x00" + small_png()[41:],
        "failed",
        r"^corrupt PNG: ",
    ),
    Case(
        "jpeg-soi-then-noise",
        "in/noise.jpg",
        lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,
        "failed",
        r"^corrupt JPEG: ",
    ),
    Case(
        "heic-brand-then-zeros",
        "in/phone.heic",
        lambda: heic_photo()[:32] + bytes(400),
        "failed",
        r"^corrupt HEIF: ",
    ),
    Case(
        "gif-without-frames",
        "in/empty.gif",
        lambda: b"GIF89a\x0a\x00\x0a\x00\x00\x00\x00\x3b",
        "failed",
        r"^corrupt GIF: ",
    ),
    # Limits, checked from headers before any decoding.
    Case(
        "png-bomb-900-megapixels",
        "in/bomb.png",
        lambda: b.blank_bilevel_png(30_000, 30_000),
        "failed",
        rf"^image has 900000000 pixels, {PIXELS}",
        note="30000 x 30000, all pixel data present, 110 KB",
    ),
    Case(
        "png-just-over-pixel-limit",
        "in/over.png",
        lambda: b.blank_bilevel_png(7072, 7072),
        "failed",
        rf"^image has 50013184 pixels, {PIXELS}",
    ),
    Case(
        "png-rgba-icc-at-pixel-limit",
        "in/poster.png",
        big_rgba_png,
        "processed",
        check=all_of(
            has_metadata(width=7071, height=7071, mode="RGBA", has_alpha=True),
            gradient_at_the_limit,
        ),
        note="49,999,041 RGBA pixels (200 MB decoded) within a 512 MB worker",
    ),
    Case(
        "jpeg-header-claims-60000x60000",
        "in/huge.jpg",
        lambda: b.jpeg_header_claiming(60_000, 60_000),
        "failed",
        rf"^image has 3600000000 pixels, {PIXELS}",
    ),
    Case(
        "gif-screen-65535x65535",
        "in/huge.gif",
        lambda: b.gif_screen_claiming(65535, 65535),
        "failed",
        rf"^image has 4294836225 pixels, {PIXELS}",
    ),
    Case(
        "tiff-header-claims-100000x100000",
        "in/huge.tif",
        lambda: b.tiff_claiming(100_000, 100_000),
        "failed",
        rf"^image has 10000000000 pixels, {PIXELS}",
    ),
    Case(
        "bmp-header-claims-100000x100000",
        "in/huge.bmp",
        lambda: b.bmp_claiming(100_000, 100_000),
        "failed",
        rf"^image has 10000000000 pixels, {PIXELS}",
    ),
    Case(
        "png-ztxt-bomb",
        "in/comment.png",
        metadata_chunk_bomb,
        "failed",
        r"^PNG metadata chunk inflates past Pillow's limit of \d+ bytes",
    ),
    Case(
        "gif-1000-frames",
        "in/anim.gif",
        lambda: b.gif_with_frames(1000),
        "processed",
        check=has_metadata(format="GIF", animated=True, frame_count=1000),
        note="at the max_frames limit: processed, first frame",
    ),
    Case(
        "gif-1001-frames",
        "in/anim2.gif",
        lambda: b.gif_with_frames(1001),
        "failed",
        rf"^image has 1001 frames, over the max_frames limit of {MAX_FRAMES}$",
    ),
    # Colour, modes, alpha and orientation done right.
    Case(
        "cmyk-jpeg",
        "in/print.jpg",
        cmyk_jpeg,
        "processed",
        check=all_of(has_metadata(mode="CMYK"), cmyk_colours),
    ),
    Case(
        "png-16-bit-grey-ramp",
        "in/ramp.png",
        grey_ramp_16_bit,
        "processed",
        check=all_of(has_metadata(mode="I;16"), still_a_ramp),
    ),
    Case(
        "rgba-png-to-jpeg",
        "in/logo-alpha.png",
        lambda: samples.transparent_png(300, 200),
        "processed",
        check=all_of(has_metadata(has_alpha=True), alpha_kept_or_flattened),
        options={"thumbnail_format": "jpeg"},
        note="thumbnails in JPEG: transparency flattened onto the white background",
    ),
    Case(
        "rgba-png-to-webp",
        "in/logo-alpha-webp.png",
        lambda: samples.transparent_png(300, 200),
        "processed",
        check=all_of(has_metadata(has_alpha=True), alpha_kept_or_flattened),
    ),
    Case(
        "palette-gif-with-transparency",
        "in/palette.gif",
        palette_gif_with_transparency,
        "processed",
        check=has_metadata(mode="P", has_alpha=True),
    ),
    *(
        Case(
            f"exif-orientation-{orientation}",
            f"in/rotated-{orientation}.jpg",
            functools.partial(photo, orientation),
            "processed",
            check=all_of(
                has_metadata(
                    orientation=orientation,
                    width=240 if orientation >= 5 else 320,
                    height=320 if orientation >= 5 else 240,
                ),
                marker_top_left,
            ),
        )
        for orientation in (3, 6, 8)
    ),
    Case(
        "gps-exif",
        "in/holiday.jpg",
        functools.partial(photo, 1, True),
        "processed",
        check=all_of(
            has_metadata(camera_make="Pipelined", camera_model="Demo Cam"),
            no_location_in_metadata,
            no_metadata_in_thumbnails,
        ),
    ),
    Case(
        "exif-ifd-loop-and-wild-offsets",
        "in/loop-exif.jpg",
        lambda: b.jpeg_with_app1(b.encoded(b.rgb_picture((320, 240)), "JPEG"), b.looping_exif()),
        "processed",
        check=has_metadata(orientation=6, width=240, height=320),
    ),
    Case(
        "jpeg-garbage-icc-profile",
        "in/bad-icc.jpg",
        lambda: b.encoded(b.rgb_picture((320, 240)), "JPEG", icc_profile=b"acsp" + b"\xff" * 300),
        "processed",
        check=has_metadata(format="JPEG"),
    ),
    Case(
        "heic-named-jpg",
        "in/IMG_0001.jpg",
        heic_photo,
        "processed",
        check=has_metadata(format="HEIF", width=96, height=64),
    ),
    Case(
        "avif",
        "in/photo.avif",
        avif_photo,
        "processed",
        check=has_metadata(format="AVIF", width=96, height=64),
    ),
    Case(
        "tiff-3-pages",
        "in/scan.tif",
        multipage_tiff,
        "processed",
        check=has_metadata(frame_count=3, animated=False),
    ),
    Case(
        "webp-animated",
        "in/anim.webp",
        animated_webp,
        "processed",
        check=has_metadata(animated=True, frame_count=3),
    ),
    Case(
        "png-20000x1",
        "in/line.png",
        lambda: b.encoded(Image.new("RGB", (20_000, 1), (9, 9, 9)), "PNG"),
        "processed",
        check=thumbnail_sizes(t256=(256, 1), t1024=(1024, 1)),
    ),
    Case(
        "png-1x1",
        "in/dot.png",
        lambda: b.encoded(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"),
        "processed",
        check=thumbnail_sizes(t256=(1, 1)),
    ),
    # PDFs.
    Case(
        "pdf-user-password",
        "in/sealed.pdf",
        lambda: encrypted_pdf("secret", "AES-256"),
        "failed",
        r"^encrypted PDF: a password is required$",
    ),
    Case(
        "pdf-owner-password-only",
        "in/protected.pdf",
        lambda: encrypted_pdf("", "RC4-128"),
        "processed",
        check=all_of(
            has_metadata(encrypted=True, page_count=1), has_text("Sealed text"), has_preview
        ),
    ),
    Case(
        "pdf-xref-prev-loop",
        "in/loop.pdf",
        xref_prev_loop,
        "processed",
        check=all_of(has_metadata(page_count=1), has_text("Loop survivor")),
    ),
    Case(
        "pdf-50000-nested-arrays-in-page",
        "in/deep.pdf",
        nested_arrays_in_page,
        "failed",
        r"^corrupt PDF: ",
    ),
    Case(
        "pdf-50000-nested-arrays-in-content",
        "in/deep2.pdf",
        nested_arrays_in_content,
        "failed",
        r"^corrupt PDF: objects nested too deeply$",
    ),
    Case(
        "pdf-flate-bomb",
        "in/bomb.pdf",
        flate_bomb_content,
        "failed",
        r"^PDF stream inflates past the decompressed stream limit of 75000000 bytes",
        note="1 GiB of zeros in a 1 MiB content stream",
    ),
    Case(
        "pdf-flate-bomb-image",
        "in/bomb-image.pdf",
        flate_bomb_image,
        "processed",
        check=all_of(has_text("Under the image"), has_preview),
        note="the same gigabyte as an image: pdfium streams it into the 1024 px preview",
    ),
    Case(
        "pdf-flate-bomb-annotation",
        "in/bomb-annotation.pdf",
        flate_bomb_annotation,
        "processed",
        check=all_of(
            has_text("Text beside the annotation"),
            preview_failed(r"^preview failed: crashed \(SIG[A-Z]+\)$"),
        ),
        note="pdfium aborts rendering it: the isolated preview step dies, the text is kept",
    ),
    Case("pdf-page-tree-cycle", "in/cycle.pdf", page_tree_cycle, "failed", r"^corrupt PDF: .*cycl"),
    Case(
        "pdf-count-lies-high",
        "in/count-high.pdf",
        lambda: b.simple_pdf(["one", "two"], count=1_000_000),
        "processed",
        check=has_metadata(page_count=2),
    ),
    Case(
        "pdf-count-lies-low",
        "in/count-low.pdf",
        lambda: b.simple_pdf(["one", "two", "three"], count=1),
        "processed",
        check=all_of(has_metadata(page_count=3), has_text("three")),
    ),
    Case(
        "pdf-non-utf8-metadata",
        "in/latin1.pdf",
        non_utf8_metadata,
        "processed",
        check=printable_metadata,
    ),
    Case("pdf-truncated", "in/half.pdf", truncated_pdf, "failed", r"^corrupt PDF: "),
    Case(
        "pdf-no-pages",
        "in/empty.pdf",
        no_pages,
        "failed",
        r"^corrupt PDF: the document has no pages$",
    ),
    Case(
        "pdf-over-max-pages",
        "in/long.pdf",
        lambda: b.simple_pdf([str(n) for n in range(MAX_PAGES + 1)]),
        "failed",
        rf"^PDF has {MAX_PAGES + 1} pages, over the max_pages limit of {MAX_PAGES}$",
    ),
    Case(
        "pdf-junk-before-header",
        "in/junk.pdf",
        lambda: b"junk" * 200 + b.simple_pdf(["after junk"]),
        "processed",
        check=has_text("after junk"),
    ),
    Case(
        "pdf-self-drawing-form",
        "in/form.pdf",
        self_drawing_form,
        "processed",
        check=all_of(has_text("form"), has_preview),
    ),
    Case(
        "pdf-renderer-trap",
        "in/trap.pdf",
        renderer_trap,
        "processed",
        check=all_of(
            has_text("Text before the trap"),
            preview_failed(r"^preview failed: ran past its \d+ s limit"),
        ),
        note="the preview is stopped at its deadline; the text is kept",
    ),
    Case(
        "pdf-zero-mediabox",
        "in/zero.pdf",
        lambda: with_mediabox(b"[0 0 0 0]    "),
        "processed",
        check=has_text("odd page"),
    ),
    Case(
        "pdf-sliver-mediabox",
        "in/sliver.pdf",
        lambda: with_mediabox(b"[0 0 9999999 9]"),
        "processed",
        check=has_text("odd page"),
    ),
    # Checked by the daemon before download.
    Case(
        "object-over-max-object-bytes",
        "in/huge.png",
        lambda: small_png() + bytes(MAX_OBJECT_BYTES),
        "failed",
        rf"^object is \d+ bytes, over the max_object_bytes limit of {MAX_OBJECT_BYTES}$",
        layer="daemon",
    ),
)


def cases(layer: Layer) -> list[Case]:
    return [case for case in CASES if layer == "daemon" or case.layer == "both"]

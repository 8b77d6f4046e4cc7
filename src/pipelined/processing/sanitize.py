"""Turning untrusted metadata values (EXIF, PDF Info) into short, printable strings."""

# Metadata ends up in queue messages and database items with size limits; a title is never
# legitimately longer than this.
MAX_TEXT_LENGTH = 1024


def clean_text(value: object) -> str | None:
    """Coerce value to a trimmed str without control characters; None if nothing is left.

    Bytes are decoded as UTF-8 with replacement, because EXIF and PDF files in the wild carry
    Latin-1, UTF-16 or random bytes under fields declared as ASCII.
    """
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", errors="replace")
    else:
        text = str(value)
    printable = "".join(char for char in text if char.isprintable() or char == " ")
    stripped = printable.strip()
    return stripped[:MAX_TEXT_LENGTH] or None


def describe_error(exc: BaseException) -> str:
    """A library exception's message for a failure reason, or its type when it has none."""
    message = str(exc).strip()
    return message[:MAX_TEXT_LENGTH] if message else type(exc).__name__

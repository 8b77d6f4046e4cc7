"""Does the media stack work without writable+executable memory? (systemd MemoryDenyWriteExecute=)

deploy/lint.sh runs this with the interpreter of the throwaway venv that holds requirements.lock.
It turns on the kernel's own memory-deny-write-execute for this process and its children
(prctl PR_SET_MDWE with PR_MDWE_REFUSE_EXEC_GAIN, Linux >= 6.3): like systemd's seccomp filter it
refuses mappings that are both writable and executable and refuses making memory executable later.
Then it exercises every native library the daemon loads: Pillow codecs, pillow-heif (HEIF and
AVIF), pypdfium2 (rendering, text, and the ctypes callbacks used for file objects and saving), plus
a process pool. Exit 0: MemoryDenyWriteExecute=yes is safe; exit 1: it is not; exit 3: the kernel
cannot tell (older than 6.3), so nothing was proven.
"""

from __future__ import annotations

import ctypes
import io
import mmap
import multiprocessing
import sys

PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1


def enable_mdwe() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        return False
    return bool(libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) & PR_MDWE_REFUSE_EXEC_GAIN)


def refused_wx() -> bool:
    try:
        mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        return True
    return False


def exercise(_: int = 0) -> str:
    import pillow_heif
    import pypdf
    import pypdfium2
    from PIL import Image

    pillow_heif.register_heif_opener()
    image = Image.new("RGB", (1200, 900), (40, 120, 200))
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF", "GIF", "HEIF", "AVIF"):
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        buffer.seek(0)
        decoded = Image.open(buffer)
        decoded.load()
        decoded.thumbnail((256, 256))
        decoded.convert("RGB").save(io.BytesIO(), "WEBP")

    pdf = io.BytesIO()
    image.save(pdf, "PDF")
    data = pdf.getvalue()
    document = pypdfium2.PdfDocument(data)
    page = document[0]
    page.render(scale=0.5).to_pil().thumbnail((256, 256))
    page.get_textpage().get_text_range()
    pypdfium2.PdfDocument(io.BytesIO(data))[0].render(scale=0.2)  # ctypes read callback
    document.save(io.BytesIO())  # ctypes write callback
    pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
    return "ok"


def main() -> int:
    if not enable_mdwe():
        print("kernel has no PR_SET_MDWE (Linux < 6.3): MemoryDenyWriteExecute compatibility not tested")
        return 3
    if not refused_wx():
        print("PR_SET_MDWE is on but a W+X mapping succeeded; the probe proves nothing")
        return 1
    exercise()
    # The pool children inherit the restriction, as the daemon's workers would under systemd.
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        pool.apply(exercise, (0,))
    return 0


if __name__ == "__main__":
    sys.exit(main())

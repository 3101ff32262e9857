"""HTML to PDF with WeasyPrint, in worker processes so that a burst of letters neither
holds the event loop nor queues behind one CPU; and print packs bound from the stored
PDFs with pypdf, so no copy is laid out twice.

Nothing here touches the database: a process pool only ever imports this module,
WeasyPrint and pypdf. Functions at module level are what the pool runs.
"""

import asyncio
import io
import multiprocessing
import os
import re
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _fonts():
    """One font configuration per process: building it is a large part of a small page."""
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


# The stylesheet in a letter's <head> (base.html has exactly one).
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


@lru_cache(maxsize=64)
def _stylesheet(text: str):
    """A letter's stylesheet, parsed once per process: every letter of a layout shares
    it, and parsing it was a tenth of the time of a one-page letter."""
    from weasyprint import CSS

    return CSS(string=text, font_config=_fonts())


def html_to_pdf(html: str) -> bytes:
    """The letter as a PDF. Its <style> is taken out and given to WeasyPrint parsed; the
    tests check the layout is the same box for box."""
    from weasyprint import HTML

    style = _STYLE.search(html)
    if style is None:
        return HTML(string=html).write_pdf(font_config=_fonts())
    rest = html[: style.start()] + html[style.end() :]
    return HTML(string=rest).write_pdf(
        font_config=_fonts(), stylesheets=[_stylesheet(style.group(1))]
    )


def write_pdf(html: str, path: str) -> int:
    """Render `html` to `path` (atomically: a reader never sees half a file); returns its
    size. Runs in the pool, so the PDF's bytes never cross between processes."""
    pdf = html_to_pdf(html)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    partial.write_bytes(pdf)
    partial.replace(target)
    return len(pdf)


def merge_pdfs(paths: Sequence[str], *, whole_sheets: bool = False) -> tuple[bytes, int]:
    """Several PDFs as one, in order. With `whole_sheets`, a document with an odd number
    of pages is followed by a blank page, so that printed double-sided each one starts on
    a sheet of its own (and goes into its own envelope). Returns the PDF and its pages."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for path in paths:
        before = len(writer.pages)
        writer.append(path, import_outline=False)
        added = len(writer.pages) - before
        if whole_sheets and added % 2:
            last = writer.pages[-1]
            writer.add_blank_page(width=last.mediabox.width, height=last.mediabox.height)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue(), len(writer.pages)


def _warm() -> None:
    import weasyprint  # noqa: F401

    _fonts()


class PdfRenderer:
    """Renders PDFs off the event loop: in `processes` worker processes (None: one per CPU)
    or, with 0, in a thread (for tests and small deployments)."""

    def __init__(self, processes: int | None = None):
        self.processes = (os.cpu_count() or 1) if processes is None else processes
        self._executor: Executor | None = None

    def _pool(self) -> Executor:
        if self._executor is None:
            if self.processes:
                # spawn, never fork: the worker process runs Temporal's threads.
                self._executor = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_warm,
                )
            else:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="pdf")
        return self._executor

    async def pdf(self, html: str) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(self._pool(), html_to_pdf, html)

    async def write(self, html: str, path: Path) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool(), write_pdf, html, str(path))

    async def merge(
        self, paths: Sequence[Path], *, whole_sheets: bool = False
    ) -> tuple[bytes, int]:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool(), _merge_call, [str(p) for p in paths], whole_sheets
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _merge_call(paths: list[str], whole_sheets: bool) -> tuple[bytes, int]:
    return merge_pdfs(paths, whole_sheets=whole_sheets)

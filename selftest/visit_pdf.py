"""The visit report as a PDF (A4): the HTML report printed by headless Chromium.

Chromium lays out the zh-CN text with the system's CJK fonts (Debian ``fonts-noto-cjk``)
and prints the inline SVG charts as vectors; no HTML-to-PDF library in Python does both
as well. It is run as a subprocess with its own throwaway profile, bounded in time, and
only when a technician asks for ``--report visit.pdf``.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install it: apt-get install chromium fonts-noto-cjk"
TIMEOUT = 90.0


def browser() -> str | None:
    """The headless Chromium on PATH, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(html_text: str, path: str, timeout: float = TIMEOUT) -> None:
    """Print ``html_text`` to the PDF ``path`` (replaced atomically). Raises OSError with
    the reason (no Chromium, it failed, it took too long)."""
    exe = browser()
    if exe is None:
        raise OSError(errno.ENOENT, f"no Chromium to print the PDF ({INSTALL_HINT})")
    target_dir = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix="posagent-pdf-") as tmp:
        src, out = os.path.join(tmp, "report.html"), os.path.join(tmp, "report.pdf")
        with open(src, "w", encoding="utf-8") as fh:
            fh.write(html_text)
        cmd = [exe, "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions",
               f"--user-data-dir={os.path.join(tmp, 'profile')}", "--no-pdf-header-footer",
               f"--print-to-pdf={out}", f"file://{src}"]
        if os.geteuid() == 0:
            cmd.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        env = {**os.environ, "HOME": tmp}
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise OSError(errno.ETIMEDOUT, f"Chromium did not print the PDF within {timeout:g} s") from None
        if not os.path.exists(out) or os.path.getsize(out) == 0:
            last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
            raise OSError(errno.EIO, f"Chromium did not print the PDF (exit {done.returncode}: {last[:200]})")
        fd, staged = tempfile.mkstemp(prefix=".visit-", suffix=".pdf", dir=target_dir)
        os.close(fd)
        try:
            shutil.copyfile(out, staged)
            os.replace(staged, path)
        except OSError:
            if os.path.exists(staged):
                os.unlink(staged)
            raise

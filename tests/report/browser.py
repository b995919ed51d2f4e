"""Open a page in headless Chromium: the DOM it rendered as a person's visible text, and a screenshot."""
from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script", "head"):
            self._hidden += 1
        elif tag in ("p", "li", "tr", "h1", "h2", "h3", "h4", "section", "br"):
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag):
        if tag in ("style", "script", "head"):
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def render(chromium: Path, page: Path, workdir: Path, *, height: int = 3000) -> tuple[str, Path]:
    """(visible text of the rendered DOM, screenshot path) for ``page`` in a fresh browser profile."""
    profile = workdir / "chromium-profile"
    shot = workdir / f"{page.stem}.png"
    common = [str(chromium), *FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    subprocess.run([*common, f"--screenshot={shot}", f"--window-size=1280,{height}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    print(f"report screenshot: {shot}")
    return visible_text(dom), shot


def section(text: str, start: str, *ends: str) -> str:
    """The text from the line with ``start`` to the next heading-like line in ``ends``."""
    begin = text.index(start)
    stop = min((i for e in ends if (i := text.find(e, begin + len(start))) != -1), default=len(text))
    return text[begin:stop]

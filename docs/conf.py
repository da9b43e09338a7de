"""Sphinx configuration of the documentation site (``make docs``; warnings are errors).

Sphinx, as the official providers' sites use, because the package's docstrings are written for it
(field lists, cross-reference roles) and autodoc turns them into the API reference. The README
stays the one text of the guide: each page names the README sections it shows with a
``<!-- readme: Title -->`` line, replaced here by that section (headings raised one level, links to
other sections pointed at their pages, links to repository files shown as paths). Examples are
included from the example DAG files the tests run, never copied.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_provider_nanobanana import __version__  # noqa: E402

project = "airflow-provider-nanobanana"
author = "The airflow-provider-nanobanana contributors"
copyright = "2026, " + author
release = version = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"{project} {release}"
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autoclass_content = "class"

README = ROOT / "README.md"
_PAGE_OF_SECTION = {
    "First run in five minutes": "first-run",
    "Set-up: the two commands": "first-run",
    "Install": "installation",
    "Supported Airflow versions": "installation",
    "The connection": "connection",
    "Generate images": "nanobanana-operator",
    "Write the prompt in Python: `@task.nanobanana`": "decorator",
    "Other APIXO models": "apixo-operator",
    "Wait for a task submitted elsewhere": "sensor",
    "Keep what was generated": "storing",
    "Generating many images": "many-images",
    "Failure handling": "failure-handling",
    "Running many tasks": "running-many-tasks",
    "Callback mode": "callback-mode",
    "Observing it": "observing",
    "Running in production": "production",
    "The APIXO emulator": "emulator",
    "Example DAGs": "examples",
    "Development": "development",
}
"""Every README section (``##``) and the page that shows it: a section left out fails the build."""

_MARKER = re.compile(r"^<!-- readme: (.+?) -->$", re.MULTILINE)
_HEADING = re.compile(r"^(#{2,4}) (.+)$", re.MULTILINE)
_LOCAL_LINK = re.compile(r"\]\(#([^)]+)\)")
_FILE_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((?!https?://|#|CHANGELOG\.md)([^)]+)\)")


def _slug(title: str) -> str:
    """A heading's anchor as GitHub (and MyST) make it."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _sections() -> dict[str, str]:
    """The README's ``##`` sections by title, each without its heading line, and what comes before
    the first (``(introduction)``, without the title)."""
    text = README.read_text()
    starts = [match for match in _HEADING.finditer(text) if match.group(1) == "##"]
    ends = [*(match.start() for match in starts[1:]), len(text)]
    sections = {match.group(2): text[match.end() : end] for match, end in zip(starts, ends, strict=True)}
    return {"(introduction)": text[text.index("\n") : starts[0].start()], **sections}


def _anchor_pages(sections: dict[str, str]) -> dict[str, str]:
    """Every README heading's anchor and where it points on the site."""
    unplaced = set(sections) - set(_PAGE_OF_SECTION) - {"(introduction)"}
    if unplaced:
        raise ValueError(f"README sections without a page in docs/conf.py: {sorted(unplaced)}")
    targets = {}
    for title, body in sections.items():
        page = _PAGE_OF_SECTION.get(title, "index")
        targets[_slug(title)] = f"{page}.md"
        for match in _HEADING.finditer(body):
            targets[_slug(match.group(2))] = f"{page}.md#{_slug(match.group(2))}"
    return targets


def _shown(body: str, targets: dict[str, str]) -> str:
    """A README section as a page shows it: headings one level up, links that work on the site."""
    body = _HEADING.sub(lambda match: f"{match.group(1)[1:]} {match.group(2)}", body)
    body = _FILE_LINK.sub(lambda match: f"{match.group(1)} (`{match.group(2)}` in the repository)", body)
    body = _LOCAL_LINK.sub(lambda match: f"]({targets[match.group(1)]})", body)
    return body.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")


def _include_readme(app: object, docname: str, source: list[str]) -> None:
    if not _MARKER.search(source[0]):
        return
    app.env.note_dependency(str(README))  # type: ignore[attr-defined]  # rebuilt when the README changes
    sections = _sections()
    targets = _anchor_pages(sections)
    source[0] = _MARKER.sub(lambda match: _shown(sections[match.group(1)], targets), source[0])


def setup(app: object) -> None:
    app.connect("source-read", _include_readme)  # type: ignore[attr-defined]

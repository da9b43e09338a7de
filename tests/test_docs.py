"""The documentation site builds without a warning, and documents every public name.

``make docs`` builds the same site for reading; this build is the one ``make test`` relies on, so a
broken reference, a README section without a page or a docstring Sphinx cannot read fails the suite.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.support import ROOT
from tests.test_public_api import PUBLIC

if TYPE_CHECKING:
    from pathlib import Path

pytest.importorskip("sphinx", reason="the docs dependency group is installed on the newest Airflow only")


def test_the_site_builds_without_warnings_and_documents_every_public_name(tmp_path: Path) -> None:
    from sphinx.util.inventory import InventoryFile

    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        ROOT / "docs",
        tmp_path,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)

    assert done.returncode == 0, done.stderr[-5000:]
    with (tmp_path / "objects.inv").open("rb") as inventory:
        documented = InventoryFile.load(inventory, "", lambda base, name: name)
    names = {entry.rsplit(".", 1)[-1] for entries in documented.values() for entry in entries}
    assert [f"{module}.{name}" for module, name in PUBLIC if name not in names] == []
    assert (tmp_path / "changelog.html").read_text().count("Upgrading") > 3

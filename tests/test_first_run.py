"""The README's "First run in five minutes", run as it stands in a copy of the checkout.

A fresh virtualenv (pip, as the README says), the emulator in the background, the connection saved
with the CLI, ``airflow dags test`` and the image it stored; only the emulator's port is changed, to
a free one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.support import ROOT, error_lines, free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.dag
FIRST_RUN = re.search(
    r"^## First run in five minutes$.*?^```bash\n(.*?)^```$", (ROOT / "README.md").read_text(), re.M | re.S
)
assert FIRST_RUN is not None
BLOCK = FIRST_RUN.group(1)
NOT_COPIED = shutil.ignore_patterns(".git", ".venv*", ".airflow*", "output", "__pycache__", ".*_cache")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_readme_first_run_stores_an_image(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=NOT_COPIED)
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "VIRTUAL_ENV", "NANOBANANA"))
    }
    script = BLOCK.replace("8089", str(free_port()))
    shell = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=checkout,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the emulator too, stopped with its group whatever happens
    )
    try:
        output, _ = shell.communicate(timeout=900)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGTERM)

    assert shell.returncode == 0, output[-5000:]
    [image] = (checkout / "output").iterdir()
    assert image.name in output  # `ls output/` shows it
    assert image.read_bytes().startswith(PNG_SIGNATURE)
    assert error_lines(output) == []

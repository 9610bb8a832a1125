"""How `make test` runs the suite: its pytest-xdist flags, tried on a generated suite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _makefile_xdist() -> list[str]:
    match = re.search(r"^XDIST := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile defines no XDIST := ... line"
    return match.group(1).split()


def test_make_test_builds_each_module_fixture_once_and_keeps_the_files_order(tmp_path):
    """A module-scoped fixture (a trained run, a DDP run, the SLURM cluster) is built once, not
    once on each worker: `--dist loadgroup` stopped grouping with pytest 9.2 (pytest-xdist issue
    #1386), and nothing failed; the suite only built its slowest fixtures twice. And the files
    start in the order collected (tests/conftest.py puts the longest tiers first): grouped by
    file, xdist by default starts the files with the most tests first, which left the real-MNIST
    workload (three tests, the longest) to the end, alone on one CPU."""
    log = tmp_path / "ran"
    log.mkdir()
    for module, tests in (("0_first", 1), ("alpha", 8), ("beta", 8)):
        (tmp_path / f"test_{module}.py").write_text(
            "import os, pytest\n"
            "@pytest.fixture(scope='module')\n"
            "def built():\n"
            f"    with open({str(tmp_path / module)!r}, 'a') as f:\n"
            "        f.write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
            f"@pytest.mark.parametrize('i', range({tests}))\n"
            "def test_uses_it(built, i):\n"
            f"    with open(os.path.join({str(log)!r}, os.environ['PYTEST_XDIST_WORKER']),"
            " 'a') as f:\n"
            f"        f.write({module!r} + '\\n')\n"
        )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # none of the project's settings
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *_makefile_xdist(), "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and "17 passed" in proc.stdout, proc.stdout[-3000:]
    for module in ("0_first", "alpha", "beta"):
        workers = (tmp_path / module).read_text().split()
        assert len(workers) == 1, f"test_{module}.py's fixture was built on {workers}"
    first_worker = (tmp_path / "0_first").read_text().strip()
    order = (log / first_worker).read_text().split()
    assert order[0] == "0_first", f"{first_worker} ran {order}: the first file collected ran later"

"""The screenshot script's guard against a headless Chromium that never exits.

A real Chromium hangs too rarely to test on demand (test_dashboards and test_real_mnist take
real screenshots); these stand-ins generated here hang on purpose, before or after writing,
and leave a child behind the way Chromium's renderers do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import tensorboard_screenshots as shots  # noqa: E402

PNG = shots.PNG_SIGNATURE + b"\x00\x00\x00\rIHDR" + bytes(17) + shots.PNG_END


def _stand_in(tmp_path: Path, plan: list[str]) -> Path:
    """A browser that, on its n-th launch, follows plan[n]: 'write', 'hang' (before writing),
    'write-hang' (after writing), 'truncate' (half a PNG, then exit 0) or 'fail' (exit 3). Each
    launch starts a sleeping child and records its pid, as Chromium leaves its renderers."""
    script = tmp_path / "chromium"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import subprocess, sys, time
        from pathlib import Path
        state = Path({str(tmp_path)!r})
        n = len(list(state.glob("launch-*")))
        plan = {plan!r}
        step = plan[min(n, len(plan) - 1)]
        child = subprocess.Popen(["sleep", "600"])
        (state / f"launch-{{n}}").write_text(str(child.pid))
        out = Path(next(a for a in sys.argv if a.startswith("--screenshot="))[13:])
        print("stand-in", step, file=sys.stderr, flush=True)
        if step in ("write", "write-hang"):
            out.write_bytes({PNG!r})
        if step == "truncate":
            out.write_bytes({PNG[:20]!r})
        if step == "fail":
            sys.exit(3)
        if step in ("hang", "write-hang"):
            time.sleep(600)
        """))  # fmt: skip
    script.chmod(0o755)
    return script


def _children_gone(tmp_path: Path) -> None:
    """Every child a launch started is dead (or a zombie awaiting its reaper), not sleeping on."""
    for record in tmp_path.glob("launch-*"):
        pid = int(record.read_text())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
            except (FileNotFoundError, ProcessLookupError):
                break
            if state in "ZX":
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            pytest.fail(f"{record.name}'s child {pid} outlived its browser")


@pytest.mark.parametrize(
    ("plan", "launches"),
    [
        (["write"], 1),
        (["write-hang"], 1),
        (["hang", "write"], 2),
        (["truncate", "fail", "write"], 3),
    ],
)
def test_a_browser_that_hangs_is_killed_with_its_children_and_tried_again(
    tmp_path, monkeypatch, capsys, plan, launches
):
    monkeypatch.setattr(shots, "browser", lambda: str(_stand_in(tmp_path, plan)))
    out = tmp_path / "shots" / "page.png"
    started = time.monotonic()
    assert shots.screenshot("http://127.0.0.1:9/#page", out, attempts=3, limit_s=3) == out
    assert out.read_bytes() == PNG
    assert len(list(tmp_path.glob("launch-*"))) == launches
    hangs = sum(step.endswith("hang") for step in plan[:launches])
    assert time.monotonic() - started < 3 * hangs + 10  # each hang costs its limit, no more
    said = capsys.readouterr().err
    assert said.count("Chromium hung 3 s on http://127.0.0.1:9/#page") == hangs
    _children_gone(tmp_path)


def test_a_browser_that_never_writes_is_an_error_naming_each_attempt(tmp_path, monkeypatch):
    monkeypatch.setattr(shots, "browser", lambda: str(_stand_in(tmp_path, ["hang", "fail"])))
    out = tmp_path / "page.png"
    with pytest.raises(RuntimeError) as error:
        shots.screenshot("http://127.0.0.1:9/#projector", out, attempts=3, limit_s=2)
    message = str(error.value)
    assert "http://127.0.0.1:9/#projector" in message and "3 attempts" in message
    assert "hung 2 s; exited with 3; exited with 3" in message
    assert "stand-in fail" in message  # the last launch's stderr, for the reader
    assert not out.exists()
    _children_gone(tmp_path)


def test_a_ctrl_c_while_the_browser_hangs_ends_it_too(tmp_path):
    """Chromium runs in a session of its own (so the group can be killed), where a terminal's
    Ctrl-C does not reach it: the script ends it on the way out, leaving nothing running."""
    stand_in = _stand_in(tmp_path, ["hang"])
    # a terminal's foreground process has Python's Ctrl-C handler; one started from a
    # background job (`make test &`, nohup) inherits SIGINT ignored, and Python keeps it so
    code = textwrap.dedent(f"""\
        import signal, sys
        from pathlib import Path
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path.insert(0, {str(Path(shots.__file__).parent)!r})
        import tensorboard_screenshots as shots
        shots.browser = lambda: {str(stand_in)!r}
        shots.screenshot("http://127.0.0.1:9/#page", Path({str(tmp_path / "p.png")!r}))
        """)  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("launch-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(tmp_path.glob("launch-*")), "the stand-in browser never started"
    time.sleep(0.5)  # past its launch, into the hang
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) != 0
    assert "KeyboardInterrupt" in proc.stderr.read()
    _children_gone(tmp_path)

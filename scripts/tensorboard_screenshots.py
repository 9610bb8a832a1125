"""Screenshots of TensorBoard's pages, taken by headless Chromium, as a person sees them.

    python scripts/tensorboard_screenshots.py LOGDIR OUT_DIR [--pages hparams scalars images]

Starts TensorBoard on a free loopback port (this project's launcher, so the page is the one a
person gets: its first view, outliers not trimmed), opens each page at 1600x1200 with
`?forceSVG=true` (headless Chromium has no WebGL, and TensorBoard's charts would stay blank
without it; the Projector draws with Chromium's software GL), waits
for the page's data, writes OUT_DIR/<page>.png and stops the server. `make screenshots` runs it
on the newest run under outputs/. Needs Chromium (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PAGES = (
    "timeseries", "hparams", "scalars", "images", "custom_scalars", "text", "pr_curves", "projector"
)  # fmt: skip
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SIZE = (1600, 1200)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk and its CRC


def browser() -> str:
    """The path of a Chromium; a clear error (with the install command) when there is none."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no Chromium found (looked for " + ", ".join(BROWSERS) + "); "
        "install it: apt-get install chromium"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tensorboard(logdir: Path, timeout: float = 90.0):
    """A TensorBoard server on logdir; yields its base URL once every run's scalars are read."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mnist_cnn.cli.tensorboard", "--logdir", str(logdir),
         "--host", "127.0.0.1", "--port", str(port), "--load_fast=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"TensorBoard exited: {server.stderr.read().decode()[-2000:]}")
            if _serving(f"{base}/data/plugin/scalars/tags"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"TensorBoard on {logdir} served no scalars in {timeout:.0f} s")
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def _serving(url: str) -> bool:
    """True once TensorBoard answers url with some run's tags."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(json.loads(response.read()))
    except (OSError, ValueError):  # not listening yet, or still loading
        return False


def screenshot(
    url: str, out: Path, wait_ms: int = 15000, attempts: int = 3, limit_s: float = 30.0
) -> Path:
    """One page, rendered by headless Chromium after wait_ms of virtual time (the page's data
    requests complete within it), written to out.

    Headless Chromium with a virtual-time budget now and then never exits, either before or
    after it writes the screenshot (a known behaviour of the flag, not of TensorBoard's pages).
    So each attempt has limit_s of real time; then Chromium and every process it started are
    killed, a complete screenshot is kept, and a missing one is taken again, up to attempts."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tried = []
    for attempt in range(1, attempts + 1):
        out.unlink(missing_ok=True)
        exited, stderr = _run_browser(url, out, wait_ms, limit_s)
        if exited is None:  # said as it happens: a run that took a minute longer says why
            print(f"Chromium hung {limit_s:.0f} s on {url} (attempt {attempt} of {attempts}); "
                  "killed it", file=sys.stderr, flush=True)  # fmt: skip
        if _complete_png(out):
            return out
        tried.append(f"exited with {exited}" if exited is not None else f"hung {limit_s:.0f} s")
    raise RuntimeError(
        f"Chromium wrote no screenshot of {url} in {attempts} attempts ({'; '.join(tried)}); "
        f"its last words: {stderr[-2000:]}"
    )


def _run_browser(url: str, out: Path, wait_ms: int, limit_s: float) -> tuple[int | None, str]:
    """Run Chromium once in its own process group; (exit status or None if it was killed after
    limit_s, its stderr). The group is killed either way, so no renderer outlives the call."""
    with tempfile.TemporaryDirectory() as profile:
        log = Path(profile) / "stderr.txt"
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [browser(), "--headless=new", "--no-sandbox", "--disable-gpu",
                 "--hide-scrollbars", f"--user-data-dir={profile}/user",
                 f"--window-size={SIZE[0]},{SIZE[1]}", f"--virtual-time-budget={wait_ms}",
                 f"--screenshot={out}", url],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,
            )  # fmt: skip
            try:
                exited = proc.wait(timeout=limit_s)
            except subprocess.TimeoutExpired:
                exited = None
            finally:  # its own session: a Ctrl-C of ours does not reach it, so it is ended here
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return exited, log.read_text(errors="replace")


def _complete_png(path: Path) -> bool:
    """True when path holds a whole PNG (its signature, and the IEND chunk that ends it): a
    Chromium killed while writing leaves a file that is not one."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END)


def page_url(base: str, page: str) -> str:
    return f"{base}/?forceSVG=true#{page}"


def take(logdir: Path, out_dir: Path, pages=PAGES) -> list[Path]:
    with tensorboard(logdir) as base:
        return [screenshot(page_url(base, p), out_dir / f"{p}.png") for p in pages]


def newest_completed_run(outputs: Path) -> Path | None:
    """The tensorboard/ dir of the newest run under `outputs` that completed (not a pruned,
    failed or running one, whose pages would be half empty)."""
    found = []
    for events in outputs.glob("**/tensorboard"):
        record = events.parent / "metrics.json"
        with contextlib.suppress(OSError, ValueError):
            if json.loads(record.read_text()).get("status") == "completed":
                found.append((record.stat().st_mtime, events))
    return max(found)[1] if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir", type=Path, help="a run's tensorboard/ dir, or '' for the newest")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--pages", nargs="+", default=list(PAGES), choices=PAGES)
    parser.add_argument("--outputs", type=Path, default=Path("outputs"), help="where to look")
    args = parser.parse_args(argv)
    if str(args.logdir) in ("", "."):
        newest = newest_completed_run(args.outputs)
        if newest is None:
            parser.error(f"no completed run with TensorBoard events under {args.outputs}/")
        print(f"screenshots of {newest} (the newest completed run; RUN=<dir> for another)")
        args.logdir = newest
    if not args.logdir.is_dir():
        parser.error(f"logdir {args.logdir} is not a directory")
    for path in take(args.logdir, args.out_dir, args.pages):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import shutil
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


def screenshot(url: str, out: Path, wait_ms: int = 15000) -> Path:
    """One page, rendered by headless Chromium after wait_ms of virtual time (the page's data
    requests complete within it), written to out."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [browser(), "--headless=new", "--no-sandbox", "--disable-gpu",
             "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={SIZE[0]},{SIZE[1]}", f"--virtual-time-budget={wait_ms}",
             f"--screenshot={out}", url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot of {url}: {result.stderr[-2000:]}")
    return out


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

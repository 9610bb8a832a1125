"""`python -m mnist_cnn.cli.tensorboard --logdir DIR [...]`: TensorBoard, as its own `tensorboard`
command runs it, less one line.

Where TensorFlow is not installed (this project never installs it, and no dashboard needs it),
TensorBoard's start prints "TensorFlow installation not found - running with reduced feature
set." to every user of every run. TensorBoard's `run_main` is three calls; they are made here in
its order, with the first one's output filtered. Every flag is TensorBoard's own. The page is
TensorBoard's with two first-visit settings changed (`dashboard_assets.py`): outliers not trimmed,
no smoothing.
"""

from __future__ import annotations

import contextlib
import io
import sys

NOT_FOR_US = "TensorFlow installation not found"


def main() -> None:
    from absl import app
    from tensorboard import default, main_lib, program
    from tensorboard.plugins import base_plugin

    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        main_lib.global_init()
    sys.stderr.writelines(
        line for line in said.getvalue().splitlines(True) if not line.startswith(NOT_FOR_US)
    )
    from mnist_cnn.dashboard_assets import assets_zip_provider

    board = program.TensorBoard(
        plugins=default.get_plugins(), assets_zip_provider=assets_zip_provider()
    )
    try:
        app.run(board.main, flags_parser=board.configure)
    except base_plugin.FlagsError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

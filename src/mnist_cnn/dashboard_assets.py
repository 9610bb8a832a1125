"""TensorBoard's web page with this project's first view: its own assets, one script added.

TensorBoard takes its page from a zip (`program.TensorBoard(assets_zip_provider=...)`, its public
constructor argument). This serves TensorBoard's own zip with `web/first_view.js` added and loaded
before the app, so the first visit draws a run's few validation points as a curve. Served as a
file of the page's own origin: TensorBoard's Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import io
import zipfile
from importlib import resources

SCRIPT_NAME = "mnist_cnn_first_view.js"
_TAG = f'<script src="{SCRIPT_NAME}"></script>'.encode()


def with_first_view(original: zipfile.ZipFile) -> bytes:
    """TensorBoard's assets zip, its index.html loading our script first, the script added."""
    script = resources.files("mnist_cnn.web").joinpath("first_view.js").read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:
        for info in original.infolist():
            content = original.read(info)
            if info.filename == "index.html":
                if b"<head>" not in content:
                    raise RuntimeError(
                        "TensorBoard's index.html has no <head>: this TensorBoard's page is not "
                        "the one mnist_cnn/dashboard_assets.py knows; serve it with "
                        "`tensorboard --logdir ...` instead"
                    )
                content = content.replace(b"<head>", b"<head>" + _TAG, 1)
            zipped.writestr(info, content)
        zipped.writestr(SCRIPT_NAME, script)
    return out.getvalue()


def assets_zip_provider():
    """A provider for `program.TensorBoard`: each call a fresh file object over the same bytes."""
    from tensorboard import assets

    with assets.get_default_assets_zip_provider()() as fp, zipfile.ZipFile(fp) as original:
        data = with_first_view(original)
    return lambda: io.BytesIO(data)

"""Run the lab notebook for a person, or strip its outputs before a commit.

python notebooks/execute.py              full mode; the executed copy goes to outputs/notebook/
python notebooks/execute.py --out DIR    the same, the copy in DIR
python notebooks/execute.py --strip      remove outputs and execution counts, in place

Cell by cell through nbclient's kernel context, not NotebookClient.execute(): on Ctrl-C or a
kill, execute() shuts the kernel down from its own signal handler while the cell still waits on
it, and ends in three of nbclient's tracebacks and exit 1. Here the signal stops the cell, the
kernel is interrupted (a training run in it saves and records that) and shut down, the cells run
so far are kept beside the executed copies, and one line says so, exit 128 + the signal (a
second signal: the kernel is killed at once). A cell that fails keeps them too.
"""

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent / "mnist_lab.ipynb"
AGAIN = "run `make notebook` again"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strip", action="store_true", help="remove outputs, in place")
    parser.add_argument(
        "--out", type=Path, default=NOTEBOOK.parents[1] / "outputs" / "notebook",
        help="folder for the executed copy (default: outputs/notebook)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.strip:
        strip()
        return
    from mnist_cnn.cli import a_command

    with a_command(None, "nbclient", left=None):  # the Stopped says where and what is left
        from mnist_cnn.run_dirs import check_writable

        check_writable(args.out, "--out")  # before the cells run, not after
        # the kernel's channels: sockets in a folder of this user's alone (mode 0700), not TCP
        # ports any local process may connect to (ipykernel warned so); a short path, as a
        # socket's name must be
        with tempfile.TemporaryDirectory(prefix="mnist-lab-") as sockets:
            execute(args.out.resolve(), time.strftime("%Y-%m-%d_%H-%M-%S"), Path(sockets))


def strip() -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, NOTEBOOK)
    print(f"stripped {NOTEBOOK}")


def execute(out: Path, stamp: str, sockets: Path) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from traitlets.config import Config

    from mnist_cnn.errors import Stopped

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=1800, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        # absolute: the kernel starts in the notebook's folder, this process elsewhere
        config=Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / "kernel")}}),
    )  # fmt: skip
    where = "while the kernel started"
    try:
        with client.setup_kernel():  # its exit shuts the kernel down
            try:
                for index, cell in enumerate(nb.cells):
                    where = f"in cell {index + 1} of {len(nb.cells)}"
                    client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except Stopped:
                try:
                    _let_the_cell_end(client)
                except Stopped:  # a second signal: no more waiting
                    client.shutdown_kernel = "immediate"
                raise
    except Stopped as exc:
        _shut_down(client)  # a signal while it started: setup_kernel's exit was not reached
        kept = _write(nb, out / f"interrupted_{stamp}.ipynb")
        exc.where = f"{where}; the cells run so far: {kept}; {AGAIN}"
        raise
    except CellExecutionError as exc:
        print(exc, file=sys.stderr)
        kept = _write(nb, out / f"failed_{stamp}.ipynb")
        print(f"error: {NOTEBOOK} failed {where} (above); the notebook up to it: {kept}",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - jupyter_client's, of a kernel that never answered
        if where != "while the kernel started":
            raise
        _shut_down(client)
        sys.exit(
            f"error: {NOTEBOOK}: its kernel ({client.kernel_name}) did not start "
            f"({type(exc).__name__}: {exc}); `jupyter kernelspec list` (in .venv) shows the one "
            "that ran; `make install` puts ipykernel's in .venv"
        )
    print(f"executed notebook: {_write(nb, out / f'executed_{stamp}.ipynb')}")


def _let_the_cell_end(client, wait_s: float = 60.0) -> None:
    """After a signal in a cell: the cell's waiting is cancelled, the kernel interrupted (a
    training run in it saves and records that), and its answer to one more request awaited, so
    the kernel is idle when it is shut down (mid-reply, ipykernel prints tracebacks)."""
    import asyncio

    from jupyter_core.utils import ensure_event_loop
    from nbclient.util import ensure_async

    loop = ensure_event_loop()
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()

    async def interrupted() -> None:
        await asyncio.gather(*pending, return_exceptions=True)
        await ensure_async(client.km.interrupt_kernel())
        await asyncio.wait_for(client.async_wait_for_reply(client.kc.kernel_info()), wait_s)

    with contextlib.suppress(Exception):  # a kernel dead or silent: it is shut down all the same
        loop.run_until_complete(interrupted())


def _shut_down(client) -> None:
    from jupyter_core.utils import ensure_event_loop
    from nbclient.util import ensure_async

    if client.km is not None and client.km.has_kernel:
        with contextlib.suppress(Exception):
            ensure_event_loop().run_until_complete(
                ensure_async(client.km.shutdown_kernel(now=True))
            )


def _write(nb, path: Path) -> Path:
    import nbformat

    from mnist_cnn.errors import UserError

    try:
        nbformat.write(nb, path)
    except OSError as exc:  # a full disk, the folder removed while the cells ran
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); {AGAIN}") from None
    return path


if __name__ == "__main__":
    main()

"""Run the lab notebook for a person, or strip its outputs before a commit.

python notebooks/execute.py          full mode; the executed copy goes to outputs/notebook/
python notebooks/execute.py --strip  remove outputs and execution counts, in place
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent / "mnist_lab.ipynb"


def main() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    if "--strip" in sys.argv:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, NOTEBOOK)
        print(f"stripped {NOTEBOOK}")
        return
    NotebookClient(
        nb,
        timeout=1800,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    out = (
        NOTEBOOK.parents[1]
        / "outputs"
        / "notebook"
        / time.strftime("executed_%Y-%m-%d_%H-%M-%S.ipynb")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    print(f"executed notebook: {out}")


if __name__ == "__main__":
    main()

"""The guide notebook is committed executed, and it still runs top to bottom without error.

It runs in a fresh Jupyter kernel (nbclient), so this process's strict JAX settings
(conftest.py) do not apply there: the notebook runs as a user would run it.
"""

import pathlib

import nbclient
import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "masking_and_padding.ipynb"


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebook_is_committed_with_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = _code_cells(nb)
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{NOTEBOOK.name} must be saved after one run of every cell, top to bottom "
        f"(execution counts 1..{len(cells)}); got {counts}. Re-run it and save it with outputs."
    )
    errors = [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"the committed notebook holds error outputs: {errors}"
    assert any("image/png" in o.get("data", {}) for cell in cells for o in cell.outputs), (
        "the committed notebook lost its loss plot (an image/png output)."
    )


def test_notebook_executes():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in _code_cells(nb):
        cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(
        nb,
        timeout=120,  # per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    assert all(cell.execution_count is not None for cell in _code_cells(nb))

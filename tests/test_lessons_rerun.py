"""Lessons survive what JupyterLab users do: re-running the training cell (it continues or reuses the
finished run from its checkpoint, never mixing two models), then re-running the cells after it."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

LESSONS = Path(__file__).resolve().parents[1] / "lessons"


@pytest.mark.slow
def test_rerunning_the_training_cell_of_lesson_03(monkeypatch):
    monkeypatch.setenv("MINIDET_FAST", "1")
    nb = nbformat.read(LESSONS / "03_retinanet_focal_loss.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    train = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "result = run(" in c.source)
    order = list(range(len(nb.cells))) + list(range(train, len(nb.cells))) + [train, train]
    probe = nbformat.v4.new_code_cell(
        "assert len(history) == cfg.train.iters, (len(history), cfg.train.iters)\n"
        "assert result['trainer'].iteration == cfg.train.iters")
    nb.cells.append(probe)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(LESSONS)}})
    with client.setup_kernel(env={**os.environ, "MINIDET_FAST": "1"}):
        for i in order:
            if nb.cells[i].cell_type == "code":
                client.execute_cell(nb.cells[i], i)  # raises CellExecutionError on any error
        client.execute_cell(probe, len(nb.cells) - 1)

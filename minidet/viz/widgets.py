"""The plumbing every explorer shares: controls, a live figure redrawn on change, and a static snapshot.

The snapshot is an ordinary cell output (a PNG), so a saved notebook or a static book shows the figure
without widget JavaScript; in JupyterLab the live copy below it follows the sliders.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import time

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def float_slider(value: float, lo: float, hi: float, step: float, name: str) -> Any:
    """An ``ipywidgets.FloatSlider`` that reports only when released (``continuous_update=False``), so a
    drag redraws once."""
    import ipywidgets as widgets

    return widgets.FloatSlider(value=value, min=lo, max=hi, step=step, description=name, continuous_update=False)


def live_figure(draw: Callable[..., Figure], controls: dict[str, Any], snapshot_note: str = "static snapshot") -> Any:
    """Lay ``controls`` (name -> ipywidget with a ``value``) above a figure ``draw(**values)``.

    Returns an ``ipywidgets.VBox`` with ``controls`` (the dict), ``output``, ``redraw()``, ``redraws``
    (the number of live figures drawn so far), ``figure`` (the last one) and ``redraw_seconds`` (the wall
    time of the last redraw, figure drawn and displayed), after displaying a snapshot of the initial values.
    """
    import ipywidgets as widgets
    from IPython.display import display

    output = widgets.Output()
    rows = [widgets.HBox(list(controls.values())[i : i + 3]) for i in range(0, len(controls), 3)]
    box = widgets.VBox([*rows, output])

    def values() -> dict[str, Any]:
        return {name: w.value for name, w in controls.items()}

    def redraw(_change: Any = None) -> None:
        start = time.perf_counter()
        fig = draw(**values())
        with output:
            output.clear_output(wait=True)
            display(fig)
        plt.close(fig)  # shown once, inside the Output widget
        box.redraws, box.figure = box.redraws + 1, fig
        box.redraw_seconds = time.perf_counter() - start

    box.controls, box.output, box.redraw, box.redraws, box.figure, box.redraw_seconds = controls, output, redraw, 0, None, 0.0
    snapshot = draw(**values())
    snapshot.text(0.5, 0.005, f"({snapshot_note}; the controls below redraw a live copy)", ha="center", va="bottom", fontsize=8, color="0.4")
    display(snapshot)
    plt.close(snapshot)
    redraw()
    for w in controls.values():
        w.observe(redraw, names="value")
    return box

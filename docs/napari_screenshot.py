"""The README's napari screenshot: the synthetic EM sample after "Run" and "Compare depths", with the widget.

Usage (a display is needed; Xvfb gives one on a headless machine)::

    xvfb-run -a python docs/napari_screenshot.py docs/napari.png

It opens napari's sample "Synthetic EM" of the plugin (which docks "unetpp: segment" and trains the tiny
sample model on first use), runs the ensemble, compares every depth against the sample's ground truth,
and saves the whole window. tests/napari/test_widget.py runs it with a shorter training.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _wait(widget, start, timeout_s: float = 900.0) -> str:  # noqa: ANN001
    """Call `start` and run Qt's event loop until the widget reports the end of the work."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, outcome = QEventLoop(), []

    def ended(result: str) -> None:
        outcome.append(result)
        loop.quit()

    widget.done.connect(ended)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    start()
    if not outcome:
        loop.exec_()
    widget.done.disconnect(ended)
    if outcome != ["ok"]:
        raise RuntimeError(f"the widget ended with {outcome or 'a timeout'}: {widget.status.text()}")
    return outcome[0]


def take(out: Path, viewer=None, size: tuple[int, int] = (1500, 780)) -> Path:  # noqa: ANN001
    """Make the screenshot in `viewer` (a new, shown one by default) and save it to `out` (PNG)."""
    import napari

    from unetpp.napari import register_manifest
    from unetpp.napari.widget import SegmentWidget

    register_manifest()
    viewer = viewer or napari.Viewer(title="unetpp in napari")
    viewer.window._qt_window.resize(*size)
    viewer.open_sample("unetpp", "synthetic_em")
    widget = next(w for w in viewer.window.dock_widgets.values() if isinstance(w, SegmentWidget))
    widget.runtime.setCurrentText("torch")  # the screenshot should not wait for runtime timings
    _wait(widget, widget.run)
    _wait(widget, widget.compare)
    viewer.layers.selection.active = viewer.layers["synthetic EM"]
    viewer.reset_view()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    return out


if __name__ == "__main__":
    print(take(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/napari.png")))

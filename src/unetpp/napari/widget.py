"""The dock widget "unetpp: segment": one model file, the ensemble or one depth, and all depths side by side.

Layout, top to bottom: the model file (any file ``unetpp predict`` takes), a line about the model, the
image layer, the mode (ensemble, or a depth on a slider), threshold, flip TTA, runtime, whether to add
the probabilities, the ground-truth layer for scores; Run, Compare depths and Cancel; a progress bar,
the last run's latency, and the comparison table (mode, parameters, latency here, IoU, Dice).

Work runs in a napari worker thread (the viewer stays responsive); Cancel stops it between two forward
passes of the model. Errors become one napari notification with the CLI's line (``unetpp: error: ...``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..errors import UnetppError
from . import compare, core, layers, sample
from .guard import import_dynamo_safely
from .table import DepthTable, latency_text

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

MODEL_FILTER = "unetpp model files (*.ckpt *.pt *.pth *.safetensors *.onnx);;All files (*)"
NO_TRUTH = "(none)"


def notify_error(error: BaseException) -> str:
    """Show `error` as one napari notification, in the CLI's words for unetpp's errors; returns the line."""
    from napari.utils.notifications import show_error

    if isinstance(error, UnetppError):
        line = f"unetpp: error: {error}"
    else:  # a bug, not a user error: still one line here, the traceback in the log
        logger.error("unetpp widget failed", exc_info=error)
        line = f"unetpp: {type(error).__name__}: {' '.join(str(error).split())}"
    show_error(line)
    return line


class SegmentWidget(QWidget):
    """The "unetpp: segment" dock widget (see the module docstring)."""

    done = Signal(str)  # "ok", "cancelled", "error" or "busy", once per run, after its layers are in the viewer
    inspected = Signal(str)  # "ok" or "error", once a chosen model file has been read and described
    _progressed = Signal(int, int, str)  # from the worker thread to the progress bar

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._models: dict[tuple[str, int, int], core.Opened] = {}
        self._cancel: threading.Event | None = None
        self.worker: Any = None
        self._inspector: Any = None
        self.last_error: str | None = None
        self.rows: list[compare.Row] = []
        self._build()
        self._progressed.connect(self._on_progress)
        for name in ("inserted", "removed", "moved"):
            getattr(self.viewer.layers.events, name).connect(self._refresh_layers)
        self.viewer.layers.selection.events.active.connect(self._follow_selection)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layers)
        self._refresh_layers()
        self._follow_selection()

    # ------------------------------------------------------------------------------------------- layout
    def _build(self) -> None:
        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("best.ckpt, .pt, .safetensors or .onnx")
        self.model_path.editingFinished.connect(self._inspect)
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_path)
        model_row.addWidget(browse)
        self.model_info = QLabel("choose a model file")
        self.model_info.setWordWrap(True)
        self.image = QComboBox()
        self.ensemble = QCheckBox("ensemble")
        self.ensemble.setChecked(True)
        self.depth = QSlider(Qt.Orientation.Horizontal)
        self.depth.setRange(1, 4)
        self.depth.setValue(4)
        self.depth.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.depth_label = QLabel("L4")
        self.depth.valueChanged.connect(lambda v: self.depth_label.setText(f"L{v}"))
        self.ensemble.toggled.connect(self._sync_mode)
        mode_row = QHBoxLayout()
        for w in (self.ensemble, self.depth, self.depth_label):
            mode_row.addWidget(w)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.01, 0.99)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5)
        self.tta = QCheckBox("flips (TTA)")
        self.postprocess = QCheckBox("remove small components (as training chose)")
        self.postprocess.setChecked(True)
        self.runtime = QComboBox()
        self.runtime.addItems(core.RUNTIMES)
        self.probabilities = QCheckBox("add probabilities")
        self.truth = QComboBox()
        self.run_button = QPushButton("Run")
        self.compare_button = QPushButton("Compare depths")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.compare_button.clicked.connect(self.compare)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        for w in (self.run_button, self.compare_button, self.cancel_button):
            buttons.addWidget(w)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(self.status.fontMetrics().lineSpacing() * 3)  # a wrapped line is not cut
        self.table = DepthTable()

        form = QFormLayout()
        form.addRow("model", model_row)
        form.addRow("", self.model_info)
        form.addRow("image", self.image)
        form.addRow("mode", mode_row)
        form.addRow("threshold", self.threshold)
        form.addRow("", self.tta)
        form.addRow("", self.postprocess)
        form.addRow("runtime", self.runtime)
        form.addRow("", self.probabilities)
        form.addRow("ground truth", self.truth)
        layout = QVBoxLayout(self)
        self.setMinimumWidth(400)  # the table's five columns, readable
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        self._sync_mode()

    def _sync_mode(self) -> None:
        self.depth.setEnabled(not self.ensemble.isChecked() and self.depth.minimum() < self.depth.maximum())

    def mode(self) -> str:
        """``"ensemble"`` or ``"select:d"`` from the checkbox and the slider."""
        return "ensemble" if self.ensemble.isChecked() else f"select:{self.depth.value()}"

    # ------------------------------------------------------------------------------------------- layers
    def _refresh_layers(self, event: Any = None) -> None:
        from napari.layers import Image, Labels

        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._refresh_layers)
        for combo, kind, extra in ((self.image, Image, []), (self.truth, Labels, [NO_TRUTH])):
            current = combo.currentText()
            names = extra + [layer.name for layer in self.viewer.layers if isinstance(layer, kind)]
            if kind is Labels:  # not the layers this widget made
                names = [n for n in names if n == NO_TRUTH or not layers.made_here(self.viewer.layers[n])]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._follow_selection()

    def _follow_selection(self, event: Any = None) -> None:
        """An image layer that names its model and ground truth (the sample) fills them in."""
        from napari.layers import Image

        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and self.image.findText(active.name) >= 0:
            self.image.setCurrentText(active.name)
        layer = self._layer(self.image.currentText())
        meta = getattr(layer, "metadata", {}).get("unetpp", {}) if layer is not None else {}
        if meta.get("model") and not self.model_path.text():
            self.model_path.setText(meta["model"])
            self._inspect()
        if meta.get("truth") and self.truth.findText(meta["truth"]) >= 0:
            self.truth.setCurrentText(meta["truth"])

    def _layer(self, name: str) -> Any:
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _source(self) -> tuple[Any, core.Source]:
        layer = self._layer(self.image.currentText())
        if layer is None:
            raise _UserError("choose an image layer (open an image, or File > Open Sample > unetpp)")
        data = layer.data[0] if layer.multiscale else layer.data
        path = getattr(layer.source, "path", None)
        return layer, core.Source(data, bool(layer.rgb), str(path or layer.name), tuple(layer.scale))

    # ------------------------------------------------------------------------------------------- model
    def _browse(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "unetpp model file", str(Path.cwd()), MODEL_FILTER)
        if name:
            self.model_path.setText(name)
            self._inspect()

    def _path(self) -> str:
        text = self.model_path.text().strip()
        if not text:
            raise _UserError("choose a model file (a run's best.ckpt, a .pt, .safetensors or .onnx file)")
        return text

    def _open(self, path: str) -> core.Opened:
        """The model file, opened once per version of the file (called in the worker thread)."""
        import_dynamo_safely()  # before training the sample or timing runtimes: see its docstring
        p = Path(path).expanduser()
        if p == sample.sample_model_path():
            sample.ensure_sample_model(self._progressed.emit, self._cancel)
        try:
            st = p.stat()
            key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
        except OSError:
            key = (path, 0, 0)
        if key not in self._models:
            self._models[key] = core.open_model(path)
        return self._models[key]

    def _inspect(self) -> None:
        """Describe the model and fit the depth slider to its heads (opened in a worker: files can be large)."""
        text = self.model_path.text().strip()
        if not text:
            return
        if Path(text).expanduser() == sample.sample_model_path() and not sample.sample_model_path().is_file():
            self.model_info.setText("tiny UNet++ of the synthetic EM sample: trained on the first run, then cached")
            self._set_heads((1, 2, 3, 4))
            return
        from napari.qt.threading import create_worker

        self.model_info.setText("opening the model…")

        def opened(model: core.Opened) -> None:
            if self.model_path.text().strip() == text:  # not a file chosen since
                self._show_model(model)
            self.inspected.emit("ok")

        def failed(error: BaseException) -> None:
            self.model_info.setText(notify_error(error))
            self.inspected.emit("error")

        # its own worker, not "the running work": Run and Compare stay available while a model is read
        self._inspector = create_worker(self._open, text, _connect={"returned": opened, "errored": failed})

    def _show_model(self, opened: core.Opened) -> None:
        self.model_info.setText(opened.describe())
        self._set_heads(opened.heads)
        self.tta.setChecked(opened.tta)  # as training chose on validation; the user may change it

    def _set_heads(self, heads: tuple[int, ...]) -> None:
        if heads and (self.depth.minimum(), self.depth.maximum()) != (min(heads), max(heads)):
            self.depth.setRange(min(heads), max(heads))
            self.depth.setValue(max(heads))
        self._sync_mode()

    # ------------------------------------------------------------------------------------------- runs
    def run(self) -> None:
        """Segment the image layer with the chosen mode: a Labels layer (and probabilities), in a worker."""
        try:
            path, (layer, source) = self._path(), self._source()
        except _UserError as e:
            self._fail(e)
            return
        settings = {**self._prediction(), "runtime": self.runtime.currentText()}
        mode, probs = self.mode(), self.probabilities.isChecked()
        truth = self._truth()

        def work() -> tuple[core.Opened, core.Result]:
            opened = self._open(path)
            kw = {"progress": self._progressed.emit, "cancel": self._cancel, "probabilities": probs}
            return opened, core.segment(opened, source, mode, **settings, **kw)

        self._start(work, lambda out: self._show_result(layer, *out, truth), label="segmenting")

    def _prediction(self) -> dict[str, object]:
        """How masks are made, as the form says: shared by Run and Compare depths."""
        return {
            "threshold": self.threshold.value(),
            "tta": self.tta.isChecked(),
            "postprocess": self.postprocess.isChecked(),
        }

    def compare(self) -> None:
        """The ensemble and every depth on the image layer, side by side, with the table."""
        try:
            path, (layer, source) = self._path(), self._source()
        except _UserError as e:
            self._fail(e)
            return
        truth = self._truth()
        settings = self._prediction()
        runtime = self.runtime.currentText()

        def work() -> tuple[core.Opened, list[compare.Row]]:
            opened = self._open(path)
            kw = {"progress": self._progressed.emit, "cancel": self._cancel, "runtime": runtime}
            if truth is not None:
                kw |= {"truth": truth[1], "truth_name": truth[0]}
            return opened, compare.compare_depths(opened, source, **settings, **kw)

        self._start(work, lambda out: self._show_comparison(layer, *out), label="comparing depths")

    def cancel(self) -> None:
        """Stop the running work between two forward passes; nothing is added to the viewer."""
        if self._cancel is not None:
            self._cancel.set()
            self.status.setText("cancelling…")

    def _truth(self) -> tuple[str, np.ndarray] | None:
        layer = self._layer(self.truth.currentText()) if self.truth.currentText() != NO_TRUTH else None
        return None if layer is None else (layer.name, np.asarray(layer.data))

    def _start(self, work: Any, show: Any, *, label: str) -> None:
        from napari.qt.threading import create_worker

        if self.worker is not None:
            self.status.setText("busy: wait for the running work or cancel it")
            self.done.emit("busy")
            return
        self._cancel = threading.Event()
        self._set_busy(True)
        self.status.setText(f"{label}…")
        self.progress.setRange(0, 0)  # busy until the first progress report

        def returned(out: Any) -> None:
            try:
                show(out)
            except Exception as e:  # shown as one line, never a traceback dialog
                self._fail(e)
                return
            self._finish("ok")

        def errored(error: BaseException) -> None:
            if isinstance(error, core.Cancelled):
                self.status.setText("cancelled")
                self._finish("cancelled")
            else:
                self._fail(error)

        self.worker = create_worker(work, _connect={"returned": returned, "errored": errored})

    def _set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.compare_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _fail(self, error: BaseException) -> None:
        self.last_error = notify_error(error)
        self.status.setText(self.last_error)
        self._finish("error")

    def _finish(self, outcome: str) -> None:
        self.worker, self._cancel = None, None
        self._set_busy(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if outcome == "ok" else 0)
        self.done.emit(outcome)

    def _on_progress(self, done: int, total: int, what: str) -> None:
        if self.worker is None:
            return
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{what}: %p%")

    # ------------------------------------------------------------------------------------------- results
    def _show_result(self, image: Any, opened: core.Opened, result: core.Result, truth: Any) -> None:
        self._show_model(opened)
        base = f"{opened.name} {result.mode}"
        layers.put_probabilities(self.viewer, f"{base} probability", result, image)
        layers.put_labels(self.viewer, base, result, image)
        flips = ", TTA" if self.tta.isChecked() else ""
        text = f"{base}: {latency_text(result.seconds)} on this machine ({result.runtime}{flips})"
        if truth is not None and opened.kind == "semantic":
            iou, dice = compare.scores(result.labels, truth[1], opened.classes, truth[0])
            text += f"; IoU {iou:.3f}, Dice {dice:.3f} against {truth[0]}"
        self.status.setText(text)

    def _show_comparison(self, image: Any, opened: core.Opened, rows: list[compare.Row]) -> None:
        self._show_model(opened)
        self.rows = rows
        layers.put_side_by_side(self.viewer, opened.name, rows, image)
        self.table.show_rows(rows)
        self.status.setText(
            f"{', '.join(r.result.mode for r in rows)} of {opened.name} on {image.name} ({rows[0].result.runtime})"
        )

    def closeEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
        self.cancel()
        super().closeEvent(event)


class _UserError(UnetppError):
    """Something to choose in the widget first."""


__all__ = ["SegmentWidget", "notify_error"]

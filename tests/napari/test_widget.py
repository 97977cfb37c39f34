"""The dock widget "unetpp: segment" in a real napari viewer (pytest-qt, Xvfb): runs, comparisons, cancel, errors.

Each test builds a viewer with napari's ``make_napari_viewer``; they skip with the reason where Qt cannot
start (see conftest.py).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import unetpp
from unetpp.cli import main
from unetpp.napari import register_manifest, sample

from .conftest import cli_predict, em_image, qt_problem

ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 180_000


@pytest.fixture
def viewer(make_napari_viewer):  # noqa: ANN201
    register_manifest()
    return make_napari_viewer()


def dock(viewer, model: Path | None = None, qtbot=None):  # noqa: ANN001, ANN201
    """The widget, docked through the plugin's manifest; with `model`, its file chosen and inspected."""
    from unetpp.napari.widget import SegmentWidget

    _, widget = viewer.window.add_plugin_dock_widget("unetpp", "unetpp: segment")
    assert isinstance(widget, SegmentWidget)
    widget.runtime.setCurrentText("torch")
    if model is not None:
        widget.model_path.setText(str(model))
        with qtbot.waitSignal(widget.inspected, timeout=WAIT_MS) as blocker:
            widget.model_path.editingFinished.emit()  # as when the user presses Enter
        assert blocker.args == ["ok"]
    return widget


def press(qtbot, widget, button) -> str:  # noqa: ANN001
    from qtpy.QtCore import Qt

    with qtbot.waitSignal(widget.done, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


@pytest.fixture
def notifications(qtbot):  # noqa: ANN201
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def record(notification) -> None:  # noqa: ANN001
        seen.append(notification.message)

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def test_run_on_a_2d_file_adds_the_cli_mask_and_probabilities(viewer, qtbot, run_ckpt, tmp_path) -> None:
    image, _ = em_image(64)
    np.save(tmp_path / "em.npy", image)
    [layer] = viewer.open(str(tmp_path / "em.npy"))
    widget = dock(viewer, run_ckpt, qtbot)
    assert (widget.depth.minimum(), widget.depth.maximum()) == (1, 2)  # fitted to the model's heads
    assert "heads [1, 2]" in widget.model_info.text()
    assert widget.image.currentText() == layer.name
    widget.ensemble.setChecked(False)
    widget.depth.setValue(2)
    widget.probabilities.setChecked(True)
    assert press(qtbot, widget, widget.run_button) == "ok"
    mask, prob = cli_predict(run_ckpt, tmp_path / "em.npy", tmp_path / "out", "--depth", "2", "--probabilities")
    labels = viewer.layers["em L2"]  # named after the run (runs/em/checkpoints/best.ckpt) and the mode
    assert type(labels).__name__ == "Labels"
    assert labels.data.dtype == mask.dtype
    assert np.array_equal(labels.data, mask)
    assert np.array_equal(viewer.layers["em L2 probability"].data, prob)
    assert "em L2:" in widget.status.text()
    assert " ms on this machine (torch)" in widget.status.text()
    # a second run with other settings updates the same layer instead of adding one
    n = len(viewer.layers)
    widget.threshold.setValue(0.9)
    assert press(qtbot, widget, widget.run_button) == "ok"
    assert len(viewer.layers) == n
    assert viewer.layers["em L2"].data.sum() < labels.data.size


def test_run_on_a_volume_adds_the_cli_mask(viewer, qtbot, volume_model, tmp_path) -> None:
    volume = (np.random.default_rng(0).random((18, 20, 13)) * 1000).astype(np.uint16)
    np.save(tmp_path / "vol.npy", volume)
    viewer.open(str(tmp_path / "vol.npy"))
    widget = dock(viewer, volume_model, qtbot)
    widget.tta.setChecked(True)
    assert press(qtbot, widget, widget.run_button) == "ok"
    mask, _ = cli_predict(volume_model, tmp_path / "vol.npy", tmp_path / "out", "--tta")
    assert viewer.layers["vol ensemble"].data.shape == (18, 20, 13)
    assert np.array_equal(viewer.layers["vol ensemble"].data, mask)
    assert viewer.dims.ndim == 3


def test_compare_depths_adds_one_layer_per_mode_and_fills_the_table(viewer, qtbot, run_ckpt) -> None:
    image, truth = em_image(64)
    viewer.add_image(image, name="em image", scale=(0.5, 0.5))
    viewer.add_labels(truth, name="truth", scale=(0.5, 0.5))
    widget = dock(viewer, run_ckpt, qtbot)
    widget.truth.setCurrentText("truth")
    assert press(qtbot, widget, widget.compare_button) == "ok"
    names = ["em ensemble [compare]", "em L1 [compare]", "em L2 [compare]"]
    assert all(name in viewer.layers for name in names)
    offsets = [viewer.layers[name].translate[-1] for name in names]
    assert offsets == [40, 80, 120]  # side by side: 64 px at scale 0.5 is 32 wide, and 8 apart
    assert list(viewer.layers[names[0]].scale) == [0.5, 0.5]
    table = [[widget.table.item(r, c).text() for c in range(5)] for r in range(widget.table.rowCount())]
    assert [row[0] for row in table] == ["ensemble", "L1", "L2"]
    assert [row[1] for row in table] == [f"{r.parameters:,}" for r in widget.rows]
    for row, result in zip(table, widget.rows, strict=True):
        assert row[2].endswith(" ms")
        assert float(row[3]) == pytest.approx(result.iou, abs=5e-4)
        assert float(row[4]) == pytest.approx(result.dice, abs=5e-4)
        assert 0 < result.iou <= result.dice <= 1
    assert np.array_equal(viewer.layers["em L1 [compare]"].data, widget.rows[1].result.labels)
    offered = [widget.truth.itemText(i) for i in range(widget.truth.count())]
    assert offered == ["(none)", "truth"]  # the widget's own layers are not ground truth


def test_cancelling_a_long_run_leaves_the_viewer_usable(viewer, qtbot, run_ckpt) -> None:
    stack = np.tile(em_image(64)[0], (1500, 1, 1))  # 1500 planes, one forward pass each: many seconds
    viewer.add_image(stack, name="stack")
    widget = dock(viewer, run_ckpt, qtbot)
    from qtpy.QtCore import Qt

    with qtbot.waitSignal(widget.done, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: widget.progress.value() > 0, timeout=WAIT_MS)  # the viewer repaints meanwhile
        assert not widget.run_button.isEnabled()
        viewer.dims.set_current_step(0, 700)  # the viewer answers while the worker runs
        cancelled_at = time.perf_counter()
        qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["cancelled"]
    assert time.perf_counter() - cancelled_at < 10  # stopped between two passes, not at the end
    assert widget.progress.value() < 1500
    assert [layer.name for layer in viewer.layers] == ["stack"]  # nothing half-done added
    assert widget.status.text() == "cancelled"
    assert widget.run_button.isEnabled()
    assert viewer.dims.current_step[0] == 700
    viewer.add_image(em_image(64)[0], name="small")  # and the widget still works
    widget.image.setCurrentText("small")
    assert press(qtbot, widget, widget.run_button) == "ok"
    assert "em ensemble" in viewer.layers


def test_errors_are_one_notification_with_the_cli_line(viewer, qtbot, tmp_path, capsys, notifications) -> None:
    image = tmp_path / "em.npy"
    np.save(image, em_image(32)[0])
    viewer.open(str(image))
    widget = dock(viewer)
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_text("not a model")
    widget.model_path.setText(str(not_a_model))
    assert press(qtbot, widget, widget.run_button) == "error"
    assert main(["predict", "--checkpoint", str(not_a_model), "--inputs", str(image), "--out", str(tmp_path)]) == 2
    cli_line = capsys.readouterr().err.strip()
    assert notifications == [cli_line]
    assert widget.status.text() == cli_line

    two = unetpp.save(unetpp.build_model("unet++", depth=2, widths=(4, 8, 16), in_channels=2), tmp_path / "two.pt")
    widget.model_path.setText(str(two))
    assert press(qtbot, widget, widget.run_button) == "error"
    assert main(["predict", "--checkpoint", str(two), "--inputs", str(image), "--out", str(tmp_path / "o")]) == 2
    cli_line = capsys.readouterr().err.strip()
    assert "channel(s) but the model takes 2" in cli_line
    assert notifications[-1] == cli_line  # the layer opened from the file names it as the CLI does

    widget.model_path.setText("")
    assert press(qtbot, widget, widget.run_button) == "error"
    assert notifications[-1].startswith("unetpp: error: choose a model file")
    assert len(notifications) == 3  # one each, and no traceback dialog (pytest-qt fails on uncaught errors)

    widget.model_path.setText(str(not_a_model))  # choosing the file already says so
    with qtbot.waitSignal(widget.inspected, timeout=WAIT_MS) as blocker:
        widget.model_path.editingFinished.emit()
    assert blocker.args == ["error"]
    assert notifications[-1] == notifications[0]
    assert widget.model_info.text() == notifications[0]


def test_the_sample_docks_the_widget_and_runs_in_two_clicks(viewer, qtbot, monkeypatch) -> None:
    from unetpp.napari.widget import SegmentWidget

    monkeypatch.setattr(sample, "STEPS", 3)
    sample.sample_model_path().unlink(missing_ok=True)  # trained on the first run, in the worker
    viewer.open_sample("unetpp", "synthetic_em")  # click 1: File > Open Sample > unetpp > Synthetic EM
    [widget] = [w for w in viewer.window.dock_widgets.values() if isinstance(w, SegmentWidget)]
    assert widget.model_path.text() == str(sample.sample_model_path())
    assert widget.truth.currentText() == sample.TRUTH_NAME
    assert "trained on the first run" in widget.model_info.text()
    assert widget.runtime.currentText() == "auto"  # the default: the fastest runtime here, measured once
    assert press(qtbot, widget, widget.run_button) == "ok"  # click 2: Run
    assert sample.sample_model_path().is_file()
    layer = viewer.layers["em-sample ensemble"]
    assert layer.data.shape == (256, 256)
    assert "IoU" in widget.status.text()
    assert any(f"({name}" in widget.status.text() for name in ("torch", "onnxruntime", "openvino"))


def test_the_screenshot_script_shows_the_widget_on_the_sample(viewer, qtbot, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sample, "STEPS", 3)
    spec = importlib.util.spec_from_file_location("napari_screenshot", ROOT / "docs" / "napari_screenshot.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = script.take(tmp_path / "shot.png", viewer)
    from PIL import Image

    shot = np.asarray(Image.open(out))
    assert shot.shape[0] > 400
    assert shot.shape[1] > 800
    assert len(np.unique(shot.reshape(-1, shot.shape[-1]), axis=0)) > 50  # a picture, not a blank window
    assert sum(1 for layer in viewer.layers if layer.name.endswith("[compare]")) == 5  # ensemble and L1-L4


def test_training_after_a_viewer_opened_does_not_crash(tmp_path) -> None:
    """Triton loaded after Mesa's LLVM (a viewer's software OpenGL) kills the process; the widget imports
    torch._dynamo without it first. In a fresh process, as a user's napari session is."""
    if (reason := qt_problem()) is not None:
        pytest.skip(reason)
    code = (
        "import napari, numpy, torch\n"
        "v = napari.Viewer(show=False)\n"
        "v.add_image(numpy.zeros((8, 8)))\n"
        "v.window._qt_window.grab()\n"  # draws: the OpenGL context and its driver are loaded
        "from unetpp.napari import guard, sample\n"
        "guard.import_dynamo_safely()\n"
        f"sample.train_sample_model(__import__('pathlib').Path({str(tmp_path / 'm.pt')!r}), 1, widths=(4, 8))\n"
        "print('trained')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("trained")

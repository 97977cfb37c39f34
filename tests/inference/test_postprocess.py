"""Small predicted components: the sizes priced on validation at the end of training, recorded, and removed by
predict, evaluate and napari unless told not to; the record travels with exported and shared models (issue 19).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unetpp
from unetpp.cli import main
from unetpp.config import RunConfig
from unetpp.data.io import read_image
from unetpp.data.synthetic import write_synthetic_dataset
from unetpp.engine.postprocess import CANDIDATES, MARGIN, choose_min_sizes, iou_per_min_size, object_sizes
from unetpp.engine.train import fit
from unetpp.evaluation.semantic import evaluate
from unetpp.inference import PredictOptions, Predictor
from unetpp.inference.components import remove_small_components, scaled, voxel_scale
from unetpp.metrics import iou, masks_from_labels
from unetpp.models.provenance import recorded_min_sizes

from ..conftest import TINY_RUN


def _square(shape, corner, side, value=1, out=None):
    out = np.zeros(shape, np.int64) if out is None else out
    out[tuple(slice(c, c + side) for c in corner)] = value
    return out


def test_components_smaller_than_the_size_go_per_class_and_diagonal_neighbours_stay() -> None:
    labels = _square((20, 20), (2, 2), 5)  # 25 pixels of class 1
    labels[7, 7] = 1  # touches the square's corner diagonally: part of it
    labels[9, 9] = labels[10, 10] = 1  # a diagonal pair, apart from the square: one component of 2
    _square((20, 20), (12, 12), 2, value=2, out=labels)  # 4 pixels of class 2
    kept = remove_small_components(labels, (3, 5))
    assert kept[9, 9] == kept[10, 10] == 0  # the pair is under 3
    assert (kept[2:7, 2:7] == 1).all()
    assert kept[7, 7] == 1
    assert (kept[12:14, 12:14] == 0).all()  # class 2's 4 pixels are under 5
    assert (labels[12:14, 12:14] == 2).all()  # the input is left as it was
    assert remove_small_components(labels, (2, 1)) is labels  # nothing under 2 of class 1, class 2 keeps all


def test_components_in_3d_and_sizes_on_another_grid() -> None:
    volume = _square((10, 10, 10), (1, 1, 1), 3)  # 27 voxels
    volume[8, 8, 8] = 1
    kept = remove_small_components(volume, (2,))
    assert kept.sum() == 27
    assert kept[8, 8, 8] == 0
    # predicted on a 2 mm grid, written on the input's 1 mm grid: a voxel there is 8 of the input's
    scale = voxel_scale({"target_spacing": [2.0, 2.0, 2.0]}, (1.0, 1.0, 1.0))
    assert scale == 8.0
    assert scaled((3, 1), scale) == (24, 1)
    assert voxel_scale({}, (1.0, 1.0)) == 1.0


def test_every_candidate_is_priced_as_removing_then_scoring_would() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((48, 40)) > 0.93).astype(np.int64)
    truth[10:30, 5:25] = 1
    pred = (rng.random((48, 40)) > 0.9).astype(np.int64)  # specks of every size, some on true objects
    pred[12:31, 6:24] = 1
    table = iou_per_min_size(pred, truth, classes=1)
    assert table.shape == (1, len(CANDIDATES) + 1)
    for k, size in enumerate((1, *CANDIDATES[:8])):
        kept = torch.from_numpy(remove_small_components(pred, (int(size),)))[None, None]
        expected = float(iou(kept.bool(), torch.from_numpy(truth)[None, None].bool())[0, 0])
        assert table[0, k] == pytest.approx(expected, abs=1e-6)  # iou() counts in float32


def test_multi_class_rows_and_an_empty_image() -> None:
    truth = _square((16, 16), (1, 1), 6, value=2)
    pred = truth.copy()
    pred[14, 14] = 1  # a speck of class 1, which the image does not have
    table = iou_per_min_size(pred, truth, classes=3)
    assert table.shape == (2, len(CANDIDATES) + 1)
    assert table[0, 0] == 0.0
    assert table[0, 1] == 1.0
    sizes = np.array([1, *CANDIDATES])
    assert (table[1][sizes <= 36] == 1.0).all()
    assert (table[1][sizes > 36] == 0.0).all()
    expected = iou(
        masks_from_labels(torch.from_numpy(pred)[None, None], 3),
        masks_from_labels(torch.from_numpy(truth)[None, None], 3),
        include_background=False,
    )[0]
    np.testing.assert_allclose(table[:, 0], expected.numpy())
    assert object_sizes(truth, 3) == [[], [36]]


def test_the_choice_removes_specks_but_never_a_typical_object() -> None:
    objects = [[400, 380, 420]]  # median 400: candidates above 50 are not offered
    empty_with_speck = np.array([[0.0, *([1.0] * len(CANDIDATES))]])  # removing the speck scores 1 from 0
    with_object = np.array([[0.9, *([0.9] * 8), *([0.0] * (len(CANDIDATES) - 8))]])  # removing more loses it
    choice = choose_min_sizes([empty_with_speck, with_object], objects)
    assert choice is not None
    assert choice.images == 2
    assert choice.min_size == (int(CANDIDATES[0]),)  # the smallest size that gains the most
    assert choice.iou == pytest.approx(0.45)
    assert choice.iou_after == pytest.approx(0.95)
    # no gain keeps every component
    flat = np.array([[0.8, *([0.8 + MARGIN] * len(CANDIDATES))]])
    assert choose_min_sizes([flat, flat], objects).min_size == (1,)
    # the best candidate is above an eighth of the median object: the best offered one is taken instead
    late = np.array([[0.5, *[0.6 if c <= 50 else 0.9 for c in CANDIDATES]]])
    assert choose_min_sizes([late, late], objects).min_size == (int(CANDIDATES[0]),)
    assert choose_min_sizes([flat], objects) is None  # one image is too few to choose on


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    run = tmp_path_factory.mktemp("postprocess") / "run"
    fit(RunConfig().override([*TINY_RUN, "train.max_epochs=2"]), run)
    return run / "checkpoints" / "best.ckpt"


def _recording(best, tmp_path, sizes: list[int]):
    """A copy of `best` whose record says validation chose to remove components under `sizes`; its heads call every
    pixel foreground (one component: the whole image), so that what is removed shows."""
    ckpt = torch.load(best, weights_only=True)
    for key in [k for k in ckpt["state_dict"] if k.startswith("model.heads.") and k.endswith(".bias")]:
        ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], 50.0)
    ckpt["unetpp"]["ensemble_heads"] = [1, 2]
    ckpt["unetpp"]["postprocess"] = {"min_size": sizes, "iou": 0.5, "iou_after": 0.6, "images": 4}
    path = tmp_path / f"min{'_'.join(map(str, sizes))}.ckpt"
    torch.save(ckpt, path)
    return path


def test_training_records_the_sizes_it_priced_on_validation(best) -> None:
    choice = torch.load(best, weights_only=True)["unetpp"]["postprocess"]
    assert choice["images"] >= 2
    assert len(choice["min_size"]) == 1
    assert choice["min_size"][0] in (1, *CANDIDATES.tolist())
    assert (choice["min_size"][0] > 1) is (choice["iou_after"] - choice["iou"] > MARGIN)
    expected = None if choice["min_size"] == [1] else tuple(choice["min_size"])
    assert recorded_min_sizes(best) == expected


def test_prediction_removes_what_the_record_says_unless_told(best, tmp_path) -> None:
    path = _recording(best, tmp_path, [10**9])  # every component is "small": masks come out empty
    predictor = Predictor(path)
    assert predictor.min_sizes == (10**9,)
    assert predictor.settings()["min_sizes"] == (10**9,)  # part of what decides the masks (resumed folders)
    prob = np.zeros((1, 32, 32), np.float32)
    prob[0, 4:20, 4:20] = 0.9
    assert predictor.labels(prob).sum() == 0
    assert Predictor(path, PredictOptions(postprocess=False)).labels(prob).sum() == 256
    assert Predictor(path, PredictOptions(head=2)).min_sizes is None  # measured on the ensemble
    assert Predictor(unetpp.load(path)).min_sizes is None  # a model in memory records nothing
    with pytest.raises(unetpp.ConfigError, match="postprocess"):
        PredictOptions(postprocess=None)  # type: ignore[arg-type]


def test_predict_and_evaluate_remove_them_and_say_so(best, tmp_path, capsys) -> None:
    path = _recording(best, tmp_path, [10**9])
    data = tmp_path / "data"
    write_synthetic_dataset(data, n_images=2, size=64, seed=3)
    scores = {}
    for flag in ([], ["--no-postprocess"]):
        out = tmp_path / f"evaluation{''.join(flag)}.csv"
        argv = ["evaluate", "--checkpoint", str(path), "--data", str(data), "--out", str(out), "--no-hd95", *flag]
        assert main(argv) == 0
        assert ("lose components under [1000000000]" in capsys.readouterr().out) is (not flag)
        rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
        scores[tuple(flag)] = {(r[0], r[1]): float(r[2]) for r in rows}
    removed, kept = scores[()], scores[("--no-postprocess",)]
    assert all(removed[k] == kept[k] > 0 for k in removed if k[1].startswith("head"))  # heads keep every component
    ensembles = [k for k in removed if k[1] in ("chosen", "ensemble")]
    assert ensembles
    assert all(removed[k] == 0.0 < kept[k] for k in ensembles)
    masks = {}
    for flag in ([], ["--no-postprocess"]):
        out = tmp_path / f"masks{''.join(flag)}"
        argv = ["predict", "--checkpoint", str(path), "--inputs", str(data / "images"), "--out", str(out), *flag]
        assert main(argv) == 0
        masks[tuple(flag)] = [read_image(p) for p in sorted(out.glob("*_mask.png"))]
    assert len(masks[()]) == 2
    assert all(m.max() == 0 for m in masks[()])
    assert all(m.min() > 0 for m in masks[("--no-postprocess",)])


def test_evaluate_removes_components_as_predict_does(best, tmp_path) -> None:
    model = unetpp.load(_recording(best, tmp_path, [1]))
    sample = {"image": torch.randn(1, 48, 40), "mask": (torch.rand(1, 48, 40) > 0.5).long(), "id": "x"}
    rows = {r.mode: r.iou for r in evaluate(model, [sample], with_hd95=False, min_sizes=(10**9,))}
    plain = {r.mode: r.iou for r in evaluate(model, [sample], with_hd95=False)}
    assert rows["ensemble"] == 0.0 < plain["ensemble"]
    assert rows["head1"] == plain["head1"] > 0


@pytest.mark.parametrize("suffix", [".onnx", ".safetensors"])
def test_exported_and_shared_models_carry_the_sizes(best, tmp_path, suffix) -> None:
    path = _recording(best, tmp_path, [12])
    out = tmp_path / f"model{suffix}"
    assert main(["export", "--checkpoint", str(path), "--format", suffix[1:], "--out", str(out)]) == 0
    assert recorded_min_sizes(out) == (12,)
    pruned = tmp_path / f"l1{suffix}"
    argv = ["export", "--checkpoint", str(path), "--depth", "1", "--format", suffix[1:], "--out", str(pruned)]
    assert main(argv) == 0
    assert recorded_min_sizes(pruned) is None  # measured on heads the pruned model no longer has
    folder = unetpp.save_pretrained(path, tmp_path / f"shared{suffix}")
    assert recorded_min_sizes(folder) == (12,)
    assert "small components removed | under 12 voxels per class" in (folder / "README.md").read_text()

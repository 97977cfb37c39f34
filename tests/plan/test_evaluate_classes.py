"""Evaluation reports the Dice of each foreground class of a label map (hippocampus: anterior, posterior)."""

from __future__ import annotations

import torch

import unetpp
from unetpp.evaluate import evaluate, format_table, summarize, write_csv
from unetpp.metrics import dice, masks_from_labels, masks_from_probs


def test_label_maps_get_a_dice_per_foreground_class(tmp_path) -> None:
    torch.manual_seed(0)
    model = unetpp.build_model("unet++", in_channels=1, classes=3, depth=2, widths=(4, 8, 16), spatial_dims=2)
    mask = torch.zeros(1, 32, 32, dtype=torch.long)
    mask[:, 4:12, 4:12], mask[:, 20:30, 18:28] = 1, 2
    samples = [{"image": torch.randn(1, 32, 32), "mask": mask, "id": "a"}]
    rows = evaluate(model, samples, with_hd95=False)
    assert all(len(r.class_dice) == 2 for r in rows)
    model.eval()
    with torch.no_grad():
        probs = unetpp.ensemble(model(samples[0]["image"][None]))
    expected = dice(masks_from_probs(probs), masks_from_labels(mask[None], 3), include_background=False)[0]
    ensemble = next(r for r in rows if r.mode == "ensemble")
    torch.testing.assert_close(torch.tensor(ensemble.class_dice), expected)
    summary = summarize(rows)
    assert summary["ensemble"]["dice_class2"][0] == ensemble.class_dice[1]
    assert "Dice per class" in format_table({"m": summary})
    header = write_csv(rows, tmp_path / "e.csv").read_text().splitlines()[0]
    assert header == "image,mode,iou,dice,hd95,dice_class1,dice_class2"


def test_binary_models_keep_the_old_columns(tmp_path) -> None:
    model = unetpp.build_model("unet", in_channels=1, classes=1, depth=2, widths=(4, 8, 16))
    samples = [{"image": torch.randn(1, 32, 32), "mask": torch.zeros(1, 32, 32, dtype=torch.long), "id": "a"}]
    rows = evaluate(model, samples, with_hd95=False)
    assert rows[0].class_dice == ()
    assert "Dice per class" not in format_table({"m": summarize(rows)})
    assert write_csv(rows, tmp_path / "e.csv").read_text().splitlines()[0] == "image,mode,iou,dice,hd95"

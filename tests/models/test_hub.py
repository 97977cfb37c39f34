"""save_pretrained / from_pretrained / push (issue 21): folders and the Hub's cache, offline; never a pickle."""

from __future__ import annotations

import json

import pytest
import torch

import unetpp
from unetpp.errors import CheckpointError, ConfigError, ExportError

from ..hub_cache import go_offline, put_in_cache

pytest.importorskip("safetensors")
DETECTOR = {
    "encoder": "test_resnet",
    "encoder_weights": None,
    "min_size": 64,
    "max_size": 64,
    "pyramid_width": 8,
    "head_width": 8,
    "detections_per_img": 20,
    "anchor_sizes": (8, 16, 32, 64, 128),
}


def tiny(kind: str) -> tuple[torch.nn.Module, object]:
    """A small model of each kind and an input for it."""
    if kind == "instance":
        pytest.importorskip("torchvision")
        from unetpp.detection import build_detector

        return build_detector("maskrcnn++", **DETECTOR), [torch.rand(3, 64, 64)]
    dims = 3 if kind == "3d" else 2
    model = unetpp.build_model("unet++", depth=2, widths=(4, 8, 16), spatial_dims=dims, classes=2)
    for m in model.modules():  # batch-norm statistics that are not the defaults
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    if kind == "pruned":
        model = unetpp.prune(model, 1)
    return model, torch.randn(2, 1, *([16] * dims))


def outputs(model: torch.nn.Module, x: object) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model.eval()(x)
    return [t for o in out for t in (o.values() if isinstance(o, dict) else [o])]


def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called: a pretrained folder must load without unpickling")

    monkeypatch.setattr(torch, "load", refuse)


@pytest.mark.parametrize("kind", ["2d", "3d", "pruned", "instance"])
def test_folder_round_trip_gives_identical_outputs(kind, tmp_path, monkeypatch) -> None:
    model, x = tiny(kind)
    folder = unetpp.save_pretrained(model, tmp_path / "shared")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    no_pickle(monkeypatch)
    again = unetpp.from_pretrained(folder)
    assert type(again) is type(model)
    assert again.config == model.config
    for a, b in zip(outputs(model, x), outputs(again, x), strict=True):
        assert torch.equal(a, b)
    assert unetpp.load(folder / "model.safetensors").config == model.config  # the weights file alone loads too


def test_the_offline_hub_cache_is_read_through_huggingface_hub(tmp_path, monkeypatch) -> None:
    model, x = tiny("2d")
    folder = unetpp.save_pretrained(model, tmp_path / "em-unetpp")
    cache = go_offline(tmp_path / "hub", monkeypatch)
    put_in_cache(cache, "my-lab/em-unetpp", folder)
    put_in_cache(cache, "my-lab/em-unetpp", unetpp.save_pretrained(tiny("pruned")[0], tmp_path / "v1"), "f" * 40, "v1")
    no_pickle(monkeypatch)
    want = outputs(model, x)
    for ref in ("my-lab/em-unetpp", "hf://my-lab/em-unetpp", "my-lab/em-unetpp@main"):
        got = outputs(unetpp.from_pretrained(ref), x)
        assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))
    assert unetpp.from_pretrained("my-lab/em-unetpp", revision="v1").spec.heads == (1,)  # a tag of the repo
    assert unetpp.load("hf://my-lab/em-unetpp@v1").spec.heads == (1,)


def test_a_hub_id_not_in_the_cache_offline_is_one_line(tmp_path, monkeypatch) -> None:
    go_offline(tmp_path / "hub", monkeypatch)
    with pytest.raises(CheckpointError) as e:
        unetpp.from_pretrained("my-lab/nothing-here")
    assert str(e.value).startswith("my-lab/nothing-here: no such local file or folder, and not in the Hugging Face")
    assert "HF_HUB_OFFLINE=1" in str(e.value)
    assert "\n" not in str(e.value)


def test_folders_that_are_not_pretrained_and_files_are_refused(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: a folder without config\.json and model\.safetensors"):
        unetpp.load(tmp_path / "empty")
    model, _ = tiny("2d")
    unetpp.save(model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"m\.pt: neither a folder .* load with unetpp\.load"):
        unetpp.from_pretrained(tmp_path / "m.pt")
    folder = unetpp.save_pretrained(model, tmp_path / "shared")
    with pytest.raises(ExportError, match="exists"):
        unetpp.save_pretrained(model, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "format": "other"}))
    with pytest.raises(CheckpointError, match=r"config\.json: not a unetpp model config"):
        unetpp.from_pretrained(folder)


def test_the_card_of_a_model_in_memory(tmp_path) -> None:
    model, _ = tiny("2d")
    prep = {"channels": "grey", "normalize": "zscore", "mask_threshold": None}
    folder = unetpp.save_pretrained(model, tmp_path / "m", preprocessing=prep, license="mit")
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: unetpp\nlicense: mit\npipeline_tag: image-segmentation\ntags:\n")
    assert "| family member | unet++ (UNet++'s dense skips) |" in card
    assert "| depth | 2 |" in card
    assert "| heads | X^(0,1), X^(0,2) |" in card
    assert f"| parameters | {sum(p.numel() for p in model.parameters()):,} |" in card
    assert "| normalize | zscore |" in card
    assert json.loads((folder / "config.json").read_text())["preprocessing"] == prep


class FakeApi:
    """huggingface_hub.HfApi as push uses it: records the calls and the files each upload would send."""

    calls: list = []

    def __init__(self, **kwargs) -> None:
        FakeApi.calls.append(("init", kwargs))

    def create_repo(self, repo_id, private=False, exist_ok=False):
        FakeApi.calls.append(("create_repo", repo_id, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, branch, exist_ok=False):
        FakeApi.calls.append(("create_branch", repo_id, branch))

    def upload_folder(self, repo_id, folder_path, revision=None, commit_message=None):
        from pathlib import Path

        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        FakeApi.calls.append(("upload_folder", repo_id, revision, files))
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


def test_push_uploads_the_same_folder(tmp_path, monkeypatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls = []
    model, x = tiny("2d")
    unetpp.save(model, tmp_path / "m.pt")
    from unetpp.cli import main

    assert main(["push", "--checkpoint", str(tmp_path / "m.pt"), "--repo", "my-lab/em", "--private"]) == 0
    names = [c[0] for c in FakeApi.calls]
    assert names == ["init", "create_repo", "upload_folder"]
    assert FakeApi.calls[1] == ("create_repo", "my-lab/em", True, True)
    files = FakeApi.calls[2][3]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert "# my-lab/em" in files["README.md"].decode()
    (tmp_path / "up").mkdir()
    for name, data in files.items():  # what was uploaded loads back to the same model
        (tmp_path / "up" / name).write_bytes(data)
    assert all(
        torch.equal(a, b) for a, b in zip(outputs(model, x), outputs(unetpp.load(tmp_path / "up"), x), strict=True)
    )

    with pytest.raises(ConfigError, match="expected a Hub repository id like org/name"):
        unetpp.models.hub.push_to_hub(model, "no-slash")

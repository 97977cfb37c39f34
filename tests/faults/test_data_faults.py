"""Data that lies about its size or its classes, and damaged caches (issue 23, items 3, 4 and 6).

What could run memory away is run in a child process under an address-space cap (RLIMIT_AS): it must end
in one line (or succeed), never in a kill.
"""

from __future__ import annotations

import gzip
import json
import os
import time

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image

from unetpp.cli import main

from .conftest import MEMORY_CAP, cli, one_line, snapshot

pytestmark = pytest.mark.bad_input

TINY = ["--epochs", "1", "--set", "model.depth=2", "model.widths=[4,8,16]", "data.patch_size=[32,32]"]
TINY += ["data.patches_per_image=1", "data.num_workers=0", "data.batch_size=2", "train.progress=false"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Fingerprints cached in this test's folder (children inherit it)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _masks(data, values_of):
    """Rewrite every mask file of `data` as `values_of(binary mask, index)` (dtype chooses the bit depth)."""
    for k, path in enumerate(sorted((data / "masks").iterdir())):
        Image.fromarray(values_of(np.array(Image.open(path)) > 0, k)).save(path)


def test_sixteen_bit_binary_masks_are_binary_under_a_memory_cap(data, tmp_path) -> None:
    _masks(data, lambda m, k: m.astype(np.uint16) * 65535)
    assert Image.open(data / "masks" / "000.png").mode == "I;16"
    done = cli(["train", "--data", data, "--run-dir", tmp_path / "run", *TINY], fault=f"memory:{MEMORY_CAP}")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["classes"] == 1


@pytest.mark.parametrize(
    ("values_of", "named", "said"),
    [
        # one 0/127/254 mask among 0/255 ones: read as {0, 1, 127, 254}, 255 classes
        (lambda m, k: (m * (254 if k == 1 else 255)).astype(np.uint8), "001.png", "would be 255 classes for 4"),
        (lambda m, k: m.astype(np.uint16) * 1000, "000.png, ", "would be 1001 classes for 2 values"),
    ],
    ids=["one 0-127-254 among 0-255", "0-1000 label map"],
)
def test_label_values_that_are_not_class_ids(values_of, named, said, data, tmp_path, fails) -> None:
    def odd(m, k):
        out = values_of(m, k)
        if k == 1 and out.max() == 254:
            out[:2, :2] = 127
        return out

    _masks(data, odd)
    before = snapshot(data)
    line = fails(["plan", "--data", data, "--out", tmp_path / "plan.yaml"])
    assert named in line
    assert said in line
    assert snapshot(data) == before
    assert not (tmp_path / "plan.yaml").exists()


def test_a_nifti_header_that_lies_about_its_size_under_a_memory_cap(tmp_path) -> None:
    data = tmp_path / "vols"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        nib.save(
            nib.Nifti1Image(rng.random((16, 16, 16), dtype=np.float32), np.eye(4)), data / "images" / f"{i}.nii.gz"
        )
        mask = (rng.random((16, 16, 16)) > 0.5).astype(np.uint8)
        nib.save(nib.Nifti1Image(mask, np.eye(4)), data / "masks" / f"{i}.nii.gz")
    header = nib.Nifti1Header()
    header.set_data_shape((1500, 1500, 1500))  # 13.5 GB of float32 declared, 4 KB stored
    header.set_data_dtype(np.float32)
    with gzip.open(data / "images" / "2.nii.gz", "wb") as f:
        f.write(header.binaryblock + b"\0" * 4 + rng.bytes(4000))
    (data / "masks" / "2.nii.gz").write_bytes((data / "masks" / "0.nii.gz").read_bytes())
    done = cli(["train", "--data", data, "--3d", "--run-dir", tmp_path / "run", *TINY], fault=f"memory:{MEMORY_CAP}")
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert "2.nii.gz: its header declares 1500x1500x1500 float32 values" in line
    assert not (tmp_path / "run").exists()


def test_an_absurd_patches_per_image_under_a_memory_cap(tmp_path) -> None:
    args = ["train", "--run-dir", tmp_path / "run", *TINY, "data.layout=synthetic", "data.synthetic_images=4"]
    done = cli([*args, "data.synthetic_size=32", "data.patches_per_image=100000000"], fault=f"memory:{MEMORY_CAP}")
    assert done.returncode == 2, done.stderr
    assert "data.patches_per_image: got 100000000" in one_line(done.stderr)
    assert not (tmp_path / "run").exists()


def test_an_epoch_of_more_patches_than_memory_holds(monkeypatch) -> None:
    from unetpp.data import limits
    from unetpp.data.sampling import PatchDataset
    from unetpp.errors import ConfigError

    monkeypatch.setattr(limits, "room_bytes", lambda: 1e9)
    with pytest.raises(ConfigError, match=r"data.patches_per_image=100000: 1000 image\(s\) x 100000"):
        PatchDataset(list(range(1000)), 32, patches_per_image=100_000, spatial_dims=2)


def test_a_bench_shape_larger_than_memory_under_a_memory_cap(model_file, tmp_path) -> None:
    t0 = time.monotonic()
    done = cli(["bench", "--checkpoint", model_file, "--shapes", "64x1x2048x2048"], fault=f"memory:{MEMORY_CAP}")
    assert done.returncode == 2, done.stderr
    assert "--shapes 64x1x2048x2048: one pass needs about" in one_line(done.stderr)
    assert time.monotonic() - t0 < 60


def test_the_memory_estimate_counts_the_classes() -> None:
    from unetpp.plan.memory import estimate_peak_bytes

    model = {"name": "unet++", "depth": 2, "widths": (4, 8, 16)}
    one, many = (estimate_peak_bytes({**model, "classes": k}, (32, 32), 2) for k in (1, 256))
    assert many - one > 2 * 2 * 255 * 32 * 32 * 4  # at least one float32 map per class, head and sample


@pytest.mark.parametrize("damage", ["truncated", "binary", "a field of the wrong type"])
def test_a_damaged_fingerprint_cache_is_rebuilt_and_said(damage, data, tmp_path, capsys) -> None:
    assert main(["plan", "--data", str(data), "--memory-gb", "4"]) == 0
    first = capsys.readouterr().out
    (cache,) = (tmp_path / "cache" / "unetpp" / "fingerprints").iterdir()
    text = cache.read_text()
    if damage == "truncated":
        cache.write_text(text[: len(text) // 2])
    elif damage == "binary":
        cache.write_bytes(os.urandom(300))
    else:
        cache.write_text(json.dumps({**json.loads(text), "median_shape": "abc"}))
    assert main(["plan", "--data", str(data), "--memory-gb", "4"]) == 0
    again = capsys.readouterr()
    assert again.out == first
    note = one_line(again.err)
    assert str(cache) in note
    assert "rebuilt from the files" in note
    assert json.loads(cache.read_text()) == json.loads(text)  # the cache is whole again
    assert main(["plan", "--data", str(data), "--memory-gb", "4"]) == 0
    assert capsys.readouterr().err == ""

"""Model files: config travels with weights; loading is safe; errors name the file."""

from __future__ import annotations

import pytest
import torch

import unetpp
from unetpp import CheckpointError, build_model

TINY = (4, 8, 16, 32)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_save_load_round_trip(tmp_path, spatial_dims) -> None:
    model = build_model("unet++", depth=3, widths=TINY, classes=2, spatial_dims=spatial_dims).eval()
    x = torch.randn(1, 1, *(8,) * spatial_dims)
    path = unetpp.save(model, tmp_path / "m.pt")
    loaded = unetpp.load(path).eval()
    assert loaded.config == model.config
    for a, b in zip(model(x), loaded(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pruned_model_round_trip_and_prune_again(tmp_path) -> None:
    model = unetpp.prune(build_model("unet+", depth=3, widths=TINY), 2).eval()
    loaded = unetpp.load(unetpp.save(model, tmp_path / "p.pt")).eval()
    assert loaded.spec == model.spec
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(loaded(x)[0], model(x)[0], rtol=0, atol=0)
    with pytest.raises(unetpp.ConfigError, match="heads only at depth"):
        unetpp.prune(loaded, 1)


def test_save_refuses_to_overwrite(tmp_path) -> None:
    model = build_model("unet", depth=1, widths=(4, 8))
    path = unetpp.save(model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="file exists; choose another path or pass overwrite=True"):
        unetpp.save(model, path)
    unetpp.save(model, path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left behind


def test_load_into_another_model_is_refused(tmp_path) -> None:
    path = unetpp.save(build_model("unet++", depth=3, widths=TINY), tmp_path / "a.pt")
    other = build_model("unet+", depth=3, widths=TINY)
    with pytest.raises(
        CheckpointError, match=r"a.pt: checkpoint holds unet\+\+ \(dense skips.* but the model is unet\+ \(short skips"
    ):
        unetpp.load(path, into=other)


def test_bad_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"missing.pt: no such checkpoint file"):
        unetpp.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk.pt: not a readable checkpoint"):
        unetpp.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"foreign.pt: not a unetpp model file"):
        unetpp.load(tmp_path / "foreign.pt")
    good = unetpp.save(build_model("unet", depth=1, widths=(4, 8)), tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trunc.pt: not a readable checkpoint"):
        unetpp.load(tmp_path / "trunc.pt")


def test_loading_never_unpickles_code(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "unetpp.model", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        unetpp.load(tmp_path / "evil.pt")

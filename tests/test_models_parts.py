"""Anchors, backbones, FPN and the RetinaNet head: shapes, sizes and the orderings they share."""
import pytest
import torch
import torchvision

from minidet.errors import CheckpointError, ConfigError
from minidet.models import AnchorGenerator
from minidet.models.anchors import anchor_sizes
from minidet.models.backbones import ResNetBackbone, TinyBackbone
from minidet.models.heads import RetinaHead
from minidet.models.necks import FPN


def test_anchor_counts_sizes_and_centres():
    gen = AnchorGenerator(strides=(8, 16), octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1.0, 2.0))
    a8, a16 = gen([(4, 5), (2, 3)])
    assert a8.shape == (4 * 5 * 9, 4) and a16.shape == (2 * 3 * 9, 4)
    # first cell, ratio 1, scale 2^0: a 32x32 box centred at (0, 0)
    assert a8[3].tolist() == [-16.0, -16.0, 16.0, 16.0]
    areas = (a8[:9, 2] - a8[:9, 0]) * (a8[:9, 3] - a8[:9, 1])
    expected = torch.tensor([s * s for s in anchor_sizes(gen)[0]] * 3)
    torch.testing.assert_close(areas, expected)
    # (y, x, anchor) order: the second cell is one stride to the right
    torch.testing.assert_close(a8[9:18] - a8[:9], torch.tensor([[8.0, 0, 8, 0]] * 9))
    assert gen([(4, 5), (2, 3)])[0] is a8  # cached


def test_head_flatten_order_matches_anchor_order():
    """An output written at cell (y, x), anchor k must land at the same index as that anchor."""
    head = RetinaHead(8, num_classes=2, num_anchors=9, num_convs=0)
    torch.nn.init.zeros_(head.box_pred.weight)
    feat = torch.zeros(1, 8, 3, 4)
    with torch.no_grad():
        head.box_pred.bias.zero_()
        head.box_pred.bias[5 * 4 + 1] = 1.0  # anchor 5, coordinate 1
        _, box = head([feat])
    assert box.shape == (1, 3 * 4 * 9, 4)
    hits = (box[0] == 1.0).nonzero().tolist()
    assert hits == [[cell * 9 + 5, 1] for cell in range(12)]


def test_tiny_backbone_strides_and_channels():
    bb = TinyBackbone()
    out = bb(torch.rand(2, 3, 64, 96))
    for k, s in bb.strides.items():
        assert out[k].shape == (2, bb.out_channels[k], 64 // s, 96 // s)


def test_fpn_levels_and_strides():
    fpn = FPN((16, 32, 64), (8, 16, 32), out_channels=24, num_extra=2)
    feats = [torch.rand(1, 16, 32, 32), torch.rand(1, 32, 16, 16), torch.rand(1, 64, 8, 8)]
    outs = fpn(feats)
    assert fpn.strides == (8, 16, 32, 64, 128)
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]
    assert all(o.shape[1] == 24 for o in outs)
    with pytest.raises(ValueError, match="extra_source"):
        FPN((16,), (8,), extra_source="p9")


def test_resnet_loads_a_weights_file_written_here(tmp_path):
    src = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(src.conv1.weight, 0.5)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    bb = ResNetBackbone(18, weights_path=path)
    assert torch.all(bb.stem[0].weight == 0.5)
    out = bb(torch.rand(1, 3, 64, 64))
    assert out["c5"].shape == (1, 512, 2, 2)


def test_resnet_weights_errors_name_the_problem(tmp_path):
    wrong = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="r50.pth.*shape"):
        ResNetBackbone(18, weights_path=wrong)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="bad.pth"):
        ResNetBackbone(18, weights_path=bad)
    with pytest.raises(CheckpointError, match="not found"):
        ResNetBackbone(18, weights_path=tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="depth"):
        ResNetBackbone(101)


def test_resnet_frozen_layers():
    bb = ResNetBackbone(18, frozen_bn=True, trainable_layers=2)
    assert not any(p.requires_grad for p in bb.stem.parameters())
    assert not any(p.requires_grad for p in bb.layer2.parameters())
    assert all(p.requires_grad for p in bb.layer4.parameters())

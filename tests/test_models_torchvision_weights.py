"""torchvision RetinaNet/FCOS weights loaded into minidet give torchvision's head outputs and detections.

The reference is torchvision itself: its models are built with random weights (no download), every
parameter and batch-norm statistic is perturbed so that a wrongly mapped tensor (even a zero bias) shows,
and both libraries run on the same images at a size torchvision does not resize.
"""
import pytest
import torch
from torchvision.models.detection import fcos_resnet50_fpn, retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2
from torchvision.models.detection.image_list import ImageList

from minidet.errors import CheckpointError
from minidet.models import (FCOS, RetinaNet, build_fcos_like_torchvision, build_retinanet_like_torchvision,
                            from_torchvision, load_torchvision_state)
from minidet.models.torchvision_weights import TorchvisionAnchorGenerator

SIZE = 128  # a multiple of 128: torchvision's strides (image // feature size) are then 8 ... 128
BUILDERS = {"retinanet_v1": retinanet_resnet50_fpn, "retinanet_v2": retinanet_resnet50_fpn_v2, "fcos": fcos_resnet50_fpn}


def torchvision_model(name: str, num_classes: int = 5, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    tv = BUILDERS[name](weights=None, weights_backbone=None, num_classes=num_classes, min_size=SIZE, max_size=SIZE)
    with torch.no_grad():
        for p in tv.parameters():  # perturb everything, relative to its scale: sane, tie-free scores
            p.add_(torch.randn_like(p) * (0.1 * p.std() if p.numel() > 1 else 0.01))
        for n, b in tv.named_buffers():
            if n.endswith("running_mean"):
                b.normal_(0, 0.1)
            elif n.endswith("running_var"):
                b.uniform_(0.5, 2.0)
        tv.head.classification_head.cls_logits.bias.uniform_(-3.0, 0.0)  # scores above the thresholds
    return tv.eval()


@pytest.mark.parametrize("name", list(BUILDERS))
def test_head_outputs_and_detections_equal_torchvision(name, tmp_path):
    tv = torchvision_model(name)
    path = tmp_path / f"{name}.pt"
    torch.save(tv.state_dict(), path)
    model = from_torchvision(path)
    assert isinstance(model, FCOS if name == "fcos" else RetinaNet) and not model.training
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = list(tv.backbone((images - model.pixel_mean) / model.pixel_std).values())
        ref = tv.head(feats)
        ours = model.dense_outputs(images)
        torch.testing.assert_close(ours[0], ref["cls_logits"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours[1], ref["bbox_regression"], rtol=1e-5, atol=1e-5)
        anchors = tv.anchor_generator(ImageList(images, [(SIZE, SIZE)] * 2), feats)[0]
        if name == "fcos":
            torch.testing.assert_close(ours[2], ref["bbox_ctrness"].squeeze(-1), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(ours[3], (anchors[:, :2] + anchors[:, 2:]) / 2)  # points = anchor centres
            torch.testing.assert_close(ours[4], anchors[:, 2] - anchors[:, 0])  # stride = anchor side
        else:
            torch.testing.assert_close(ours[2], anchors)
        expected, got = tv(list(images)), model(images)
    for e, g in zip(expected, got):
        assert len(e["boxes"]) > 10  # enough detections for the comparison to mean something
        torch.testing.assert_close(g["boxes"], e["boxes"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(g["scores"], e["scores"], rtol=1e-5, atol=1e-6)
        assert torch.equal(g["labels"], e["labels"])


def test_anchor_sizes_are_torchvisions():
    """torchvision truncates 32 * 2^(k/3) to (32, 40, 50); minidet's own generator keeps 40.3 and 50.8."""
    base = TorchvisionAnchorGenerator((8,), octave_base_scale=4.0).base_anchors(8)
    square = base[3:6]  # ratio 1.0 (ratio-major, scale-minor)
    assert (square[:, 2] - square[:, 0]).tolist() == [32.0, 40.0, 50.0]
    assert torch.equal(base, base.round())


def test_wrong_number_of_classes_names_the_key():
    state = torchvision_model("fcos", num_classes=5).state_dict()
    with pytest.raises(CheckpointError, match=r"cls_logits.weight.*\(5, 256, 3, 3\).*\(7, 256, 3, 3\)"):
        load_torchvision_state(build_fcos_like_torchvision(7), state)


def test_missing_and_foreign_keys_are_refused():
    state = torchvision_model("retinanet_v1", num_classes=3).state_dict()
    model = build_retinanet_like_torchvision(3)
    broken = {k: v for k, v in state.items() if k != "backbone.fpn.extra_blocks.p7.bias"}
    with pytest.raises(CheckpointError, match=r"no torchvision tensor for \['neck.extra.1.bias'\]"):
        load_torchvision_state(model, broken)
    with pytest.raises(CheckpointError, match="roi_heads.box_predictor.weight"):
        load_torchvision_state(model, {**state, "roi_heads.box_predictor.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="not found"):
        from_torchvision("/nonexistent/retinanet.pt")

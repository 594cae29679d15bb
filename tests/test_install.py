"""The torch + torchvision pair must be one whose compiled ops load (a CPU-only torch wheel with a
CUDA torchvision fails here)."""
import torch
import torchvision
from torchvision.ops import batched_nms, nms, roi_align


def test_torchvision_nms_runs():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1, 2]


def test_torchvision_roi_align_runs():
    feat = torch.arange(16.0).view(1, 1, 4, 4)
    out = roi_align(feat, [torch.tensor([[0.0, 0, 4, 4]])], output_size=2, aligned=True)
    assert out.shape == (1, 1, 2, 2)


def test_versions_are_a_pair():
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    assert (major, minor) >= (2, 14), torch.__version__
    assert torchvision.__version__.split("+")[0] >= "0.29"

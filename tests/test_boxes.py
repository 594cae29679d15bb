import math

import pytest
import torch
from torchvision.ops import box_iou

from minidet.boxes import DeltaXYWHCoder, LTRBCoder, batched_box_iou, clip_boxes, pad_targets


def rand_boxes(n, size=100.0, g=None):
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2 + 1
    return torch.cat([xy, xy + wh], 1)


def test_batched_iou_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    a = rand_boxes(50, g=g)
    b = torch.stack([rand_boxes(7, g=g), rand_boxes(7, g=g)])
    out = batched_box_iou(a, b)
    assert out.shape == (2, 50, 7)
    for i in range(2):
        torch.testing.assert_close(out[i], box_iou(a, b[i]))


def test_iou_hand_case_and_degenerate():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[[5.0, 0, 15, 10], [3, 3, 3, 3]]])  # half overlap; zero-area box
    out = batched_box_iou(a, b)
    assert out[0, 0, 0].item() == pytest.approx(50 / 150)
    assert out[0, 0, 1].item() == 0.0


def test_delta_coder_round_trip_and_known_value():
    coder = DeltaXYWHCoder(weights=(10.0, 10.0, 5.0, 5.0))
    anchors = torch.tensor([[0.0, 0, 10, 20]])
    boxes = torch.tensor([[5.0, 5, 25, 25]])
    d = coder.encode(anchors, boxes)
    # centre (15, 15) vs (5, 10): dx = 10/10*10, dy = 5/20*10, dw = 5 log 2, dh = 5 log 1
    torch.testing.assert_close(d, torch.tensor([[10.0, 2.5, 5 * math.log(2), 0.0]]))
    torch.testing.assert_close(coder.decode(anchors, d), boxes)


def test_delta_decode_clamps_huge_sizes():
    coder = DeltaXYWHCoder()
    out = coder.decode(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[0.0, 0, 100.0, 100.0]]))
    assert torch.isfinite(out).all()


def test_ltrb_round_trip_with_stride():
    coder = LTRBCoder(normalize=True)
    points = torch.tensor([[12.0, 20.0]])
    boxes = torch.tensor([[4.0, 8.0, 36.0, 28.0]])
    strides = torch.tensor([8.0])
    d = coder.encode(points, boxes, strides)
    torch.testing.assert_close(d, torch.tensor([[1.0, 1.5, 3.0, 1.0]]))
    torch.testing.assert_close(coder.decode(points, d, strides), boxes)


def test_clip_boxes_per_image():
    boxes = torch.tensor([[[-5.0, -5, 50, 50]], [[-5.0, -5, 50, 50]]])
    out = clip_boxes(boxes, torch.tensor([[40, 30], [100, 100]]))
    assert out[0, 0].tolist() == [0, 0, 30, 40]
    assert out[1, 0].tolist() == [0, 0, 50, 50]


def test_pad_targets_handles_empty_images():
    t = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
         {"boxes": torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]]), "labels": torch.tensor([2, 0])}]
    boxes, labels, valid = pad_targets(t)
    assert boxes.shape == (2, 2, 4)
    assert valid.tolist() == [[False, False], [True, True]]
    assert labels[1].tolist() == [2, 0] and labels[0].tolist() == [-1, -1]

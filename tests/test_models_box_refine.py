"""DW box refinement: sampling on constant and shifted maps, the offsets of each side, the identity on a
map of one box, a hand-computed refinement, gradients, and CUDA == CPU."""
import pytest
import torch

from minidet.models.heads import edge_offsets, refine_distances, sample_edges


def test_constant_map_is_read_back_anywhere_inside():
    maps = torch.tensor([1.0, -2.0, 3.5, 7.0]).view(1, 4, 1, 1).expand(2, 4, 5, 6).contiguous()
    offsets = (torch.rand(2, 8, 5, 6) - 0.5) * 0.9  # |offset| < 0.45: inner cells stay inside the map
    out = sample_edges(maps, offsets)
    torch.testing.assert_close(out[:, :, 1:-1, 1:-1], maps[:, :, 1:-1, 1:-1])


def test_shifted_map_integer_and_fractional():
    ramp = torch.arange(30.0).view(1, 1, 5, 6).expand(1, 4, 5, 6).contiguous()  # value = 6 y + x
    offsets = torch.zeros(1, 8, 5, 6)
    offsets[:, 1] = 1.0  # channel 0 (x1): dx = +1 -> the right neighbour, zero past the border
    offsets[:, 2] = -1.0  # channel 1 (y1): dy = -1 -> the cell above
    offsets[:, 5] = 0.5  # channel 2 (x2): dx = +0.5 -> bilinear: halfway to the right neighbour
    out = sample_edges(ramp, offsets)
    right = torch.cat([ramp[0, 0, :, 1:], torch.zeros(5, 1)], dim=1)
    above = torch.cat([torch.zeros(1, 6), ramp[0, 0, :-1]], dim=0)
    torch.testing.assert_close(out[0, 0], right)
    torch.testing.assert_close(out[0, 1], above)
    torch.testing.assert_close(out[0, 2, :, :-1], ramp[0, 0, :, :-1] + 0.5)
    torch.testing.assert_close(out[0, 3], ramp[0, 0])  # no offset: the identity


def test_edge_offsets_point_each_coordinate_at_its_side():
    learned = torch.arange(8.0).view(1, 8, 1, 1)
    dist = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)  # l, t, r, b
    # (dy, dx) per coordinate: x1 left by l, y1 up by t, x2 right by r, y2 down by b
    expected = [0, 1 - 1, 2 - 2, 3, 4, 5 + 3, 6 + 4, 7]
    assert edge_offsets(learned, dist).flatten().tolist() == expected


def test_refine_is_the_identity_on_a_map_of_one_box():
    """Every cell predicts the same box (stride units): each coordinate is read back unchanged."""
    h, w = 8, 8
    y, x = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    box = (1.2, 2.0, 6.3, 7.0)
    dist = torch.stack([x - box[0], y - box[1], box[2] - x, box[3] - y])[None]  # negative outside the box
    # samples land at x = 0.7, y = 1.5, x = 5.8, y = 6.5 (cells) for every point: inside the map
    out = refine_distances(dist, torch.zeros(1, 8, h, w))
    torch.testing.assert_close(out, dist.clamp(min=0))


def test_refine_by_hand():
    """Constant distances l = t = r = b = 2 and no learned offset: each point reads x1 two cells to the
    left, where the coarse x1 is (x - 2) - 2; so interior points double their distances."""
    dist = torch.full((1, 4, 7, 7), 2.0)
    out = refine_distances(dist, torch.zeros(1, 8, 7, 7))
    torch.testing.assert_close(out[0, :, 2:-2, 2:-2], torch.full((4, 3, 3), 4.0))
    # cell (3, 0): x1 is read at x = -2, outside the map -> 0, so l = x - 0 = 0.5
    torch.testing.assert_close(out[0, 0, 3, 0], torch.tensor(0.5))
    learned = torch.zeros(1, 8, 7, 7)
    learned[:, 1] = 0.5  # x1 read half a cell further right: halfway between x1 = x - 4 and x - 3
    out = refine_distances(dist, learned)
    torch.testing.assert_close(out[0, 0, 3, 3], torch.tensor(3.5))


def test_gradients_reach_distances_and_offsets():
    dist = (torch.rand(1, 4, 6, 6) * 2).requires_grad_()
    learned = (torch.rand(1, 8, 6, 6) * 0.2).requires_grad_()
    refine_distances(dist, learned).sum().backward()
    assert dist.grad.abs().sum() > 0 and learned.grad.abs().sum() > 0


@pytest.mark.cuda
def test_cuda_equals_cpu(cuda_device):
    torch.manual_seed(0)
    dist, learned = torch.rand(2, 4, 9, 7) * 3, torch.randn(2, 8, 9, 7) * 0.5
    torch.testing.assert_close(refine_distances(dist.to(cuda_device), learned.to(cuda_device)).cpu(),
                               refine_distances(dist, learned), rtol=1e-4, atol=1e-5)

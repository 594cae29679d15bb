"""The plotting helpers of minidet.viz run headless on tiny inputs and draw what they say."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from minidet.models.anchors import AnchorGenerator, anchor_sizes  # noqa: E402
from minidet.viz.anchors import (  # noqa: E402
    anchors_of_cell, draw_anchors, plot_delta_histograms, plot_iou_heatmap, plot_per_level,
)
from minidet.viz.boxes import (  # noqa: E402
    PALETTE, draw_detections, level_edges, plot_class_counts, plot_size_histogram, show_samples,
)

NAMES = ("circle", "square", "triangle")
BOXES = torch.tensor([[2.0, 3.0, 10.0, 12.0], [5.0, 5.0, 20.0, 25.0], [0.0, 0.0, 4.0, 4.0]])


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_draw_detections_rectangles_and_captions(ax):
    image = torch.rand(3, 32, 32)
    out = draw_detections(ax, image, BOXES, torch.tensor([0, 2, 1]), torch.tensor([0.9, 0.5, 0.25]),
                          class_names=NAMES, title="t")
    assert out is ax
    rects = rectangles(ax)
    assert len(rects) == 3
    x1, y1, x2, y2 = BOXES[1].tolist()
    assert rects[1].get_xy() == (x1, y1) and rects[1].get_width() == x2 - x1 and rects[1].get_height() == y2 - y1
    captions = [t.get_text() for t in ax.texts]
    assert captions == ["circle 0.90", "triangle 0.50", "square 0.25"]
    # one colour per class, from the fixed palette
    assert matplotlib.colors.to_hex(rects[1].get_edgecolor()) == PALETTE[2].lower()
    assert ax.get_title() == "t"


def test_draw_detections_score_thresh_array_image_and_no_labels(ax):
    image = np.zeros((32, 32, 3))
    draw_detections(ax, image, BOXES, scores=[0.9, 0.5, 0.25], score_thresh=0.3, color="red")
    assert len(rectangles(ax)) == 2
    assert [t.get_text() for t in ax.texts] == ["0.90", "0.50"]


@pytest.mark.parametrize("image", [torch.rand(3, 16, 16), None])
def test_draw_detections_empty(ax, image):
    draw_detections(ax, image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0), class_names=NAMES)
    assert rectangles(ax) == [] and len(ax.texts) == 0


def test_draw_detections_rejects_mismatched_labels(ax):
    with pytest.raises(ValueError, match="one per box"):
        draw_detections(ax, None, BOXES, labels=[0, 1])


class FakeDataset:
    """The two things show_samples uses of a CocoDetection: indexing and class_names."""

    class_names = NAMES

    def __getitem__(self, i):
        n = i % 3  # 0, 1, 2 objects
        return torch.rand(3, 24, 24), {"boxes": BOXES[:n], "labels": torch.arange(n), "image_id": i + 1}


def test_show_samples_grid():
    fig = show_samples(FakeDataset(), [0, 1, 2], ncols=2)
    try:
        axes = fig.axes
        assert len(axes) == 4
        assert [len(rectangles(a)) for a in axes] == [0, 1, 2, 0]
        assert "circle" in axes[1].texts[0].get_text()
        assert "square" in axes[2].texts[1].get_text()
        assert not axes[3].axison  # the unused panel is hidden
    finally:
        plt.close(fig)


def test_level_edges_and_size_histogram(ax):
    sizes = anchor_sizes(AnchorGenerator(octave_base_scale=2.0))
    edges = level_edges(sizes)
    assert len(edges) == 4 and edges == sorted(edges)
    assert edges[0] == pytest.approx((2 * 8 * 2 ** (2 / 3) * 2 * 16) ** 0.5)
    obj = torch.tensor([9.0, 12, 30, 60, 150])
    plot_size_histogram(ax, obj, edges, ["P3", "P4", "P5", "P6", "P7"])
    labels = [t.get_text() for t in ax.texts]
    assert "P3\n2" in labels and "P6\n1" in labels
    assert ax.get_xscale() == "log" and ax.get_xlabel() and ax.get_title()
    with pytest.raises(ValueError):
        plot_size_histogram(ax, obj, edges, ["P3"])


def test_plot_class_counts(ax):
    plot_class_counts(ax, torch.tensor([0, 0, 2]), NAMES)
    assert [p.get_height() for p in ax.patches] == [2, 0, 1]


def test_anchor_helpers(ax):
    gen = AnchorGenerator(strides=(8, 16), octave_base_scale=2.0)
    levels = gen([(4, 4), (2, 2)])
    cell = anchors_of_cell(levels[0], (4, 4), gen.num_anchors, 1, 2)
    assert cell.shape == (9, 4)
    torch.testing.assert_close((cell[:, :2] + cell[:, 2:]) / 2, torch.tensor([[16.0, 8.0]]).expand(9, 2))
    draw_anchors(ax, torch.rand(3, 32, 32), cell, gt_boxes=BOXES[:1], title="P3")
    assert len(rectangles(ax)) == 1 + 9 + 1  # image border, anchors, ground truth
    with pytest.raises(ValueError):
        anchors_of_cell(levels[0], (4, 4), gen.num_anchors, 4, 0)


def test_iou_heatmap_and_bars():
    fig, (a, b) = plt.subplots(1, 2)
    try:
        iou = torch.rand(4 * 4 * 9)
        plot_iou_heatmap(a, iou, (4, 4), 9, stride=8, gt_box=BOXES[0], title="IoU")
        shown = a.images[0].get_array()
        np.testing.assert_allclose(shown, iou.reshape(4, 4, 9).max(2).values.numpy())
        plot_per_level(b, {"x": [1, 2], "y": torch.tensor([0.5, 0.25])}, ["P3", "P4"], "count", "t", log=True)
        assert len(b.patches) == 4 and b.get_yscale() == "log"
    finally:
        plt.close(fig)


def test_delta_histograms():
    fig, axes = plt.subplots(1, 4)
    try:
        plot_delta_histograms(list(axes), torch.randn(50, 4))
        assert all(len(a.patches) == 40 for a in axes)
        with pytest.raises(ValueError):
            plot_delta_histograms(list(axes[:2]), torch.randn(5, 4))
    finally:
        plt.close(fig)

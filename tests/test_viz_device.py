"""The plotting helpers with a model that is not on the CPU (as after ``Trainer`` on a GPU): they move the
data to the model and hand back CPU arrays. On a machine without a GPU the static check still runs: every
``.numpy()`` in ``minidet/viz`` comes after a ``.cpu()``."""
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pytest
import torch

import minidet.viz

VIZ = Path(minidet.viz.__file__).parent


def test_every_numpy_call_in_viz_follows_cpu():
    bad = [f"{p.name}:{i}: {line.strip()}" for p in sorted(VIZ.glob("*.py"))
           for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"(?<!\.cpu\(\))\.numpy\(\)", line)]
    assert not bad, "\n".join(bad)


def _targets():
    return [{"boxes": torch.tensor([[10.0, 12, 60, 70], [70, 20, 120, 100]]), "labels": torch.tensor([0, 2])}]


@pytest.mark.cuda
def test_helpers_take_cpu_data_for_a_cuda_model(cuda_device, tiny_shapes):
    from minidet.data import CocoDetection, build_transforms
    from minidet.models import build_dw, build_faster_rcnn, build_mimicdet
    from minidet.viz.dw import dw_maps, kept_detection_ious
    from minidet.viz.libra import negative_pool
    from minidet.viz.mimic import best_refined, refinement_view, stage_times, train_step_seconds

    images = torch.rand(1, 3, 128, 128)
    torch.manual_seed(0)
    dw_model = build_dw(3, backbone="tiny").to(cuda_device)
    maps = dw_maps(dw_model, images, _targets())
    assert maps["w_pos"].shape[-1] == 2
    ds = CocoDetection(tiny_shapes["val"], tiny_shapes["val_images"], build_transforms(False, 128))
    assert kept_detection_ious(build_dw(ds.num_classes, backbone="tiny").to(cuda_device), ds, [0, 1], score_thresh=0.0).ndim == 1
    pool = negative_pool(build_faster_rcnn(3, backbone="tiny").to(cuda_device), images, _targets())
    assert pool[0]["iou"].numel() > 0
    mimic = build_mimicdet(3, anchor_scale=2.0, num_rois=32).to(cuda_device)
    view = refinement_view(mimic, images[0])
    assert view["refined"].device.type == "cpu" and len(best_refined(view, _targets()[0]["boxes"])) == 2
    assert stage_times(mimic, images, repeats=1)["total"] > 0
    assert train_step_seconds(mimic, images, _targets(), repeats=1) > 0

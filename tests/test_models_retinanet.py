"""RetinaNet end to end on small inputs: losses, per-level parts, empty images, inference, learning."""
import math

import torch

from minidet.models import build_retinanet
from minidet.models.postprocess import postprocess_dense


def make_targets():
    return [
        {"boxes": torch.tensor([[10.0, 12, 40, 50], [60, 60, 120, 110]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_losses_are_finite_and_levels_sum_to_totals():
    torch.manual_seed(0)
    model = build_retinanet(3, backbone="tiny", octave_base_scale=2.0)
    out = model(torch.rand(2, 3, 128, 128), make_targets())
    assert set(k for k in out if k.startswith("loss_")) == {"loss_cls", "loss_box"}
    for k in ("loss_cls", "loss_box"):
        assert torch.isfinite(out[k])
        torch.testing.assert_close(out[f"levels/{k}"].sum(), out[k].detach())
    assert out["levels/num_pos"].sum() >= 2  # every object gets at least one anchor
    assert out["levels/pos_fraction"].shape == (5,)
    (out["loss_cls"] + out["loss_box"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_initial_classification_loss_matches_prior():
    """With prior 0.01 every anchor starts at p = 0.01: the loss per negative is known in closed form."""
    torch.manual_seed(0)
    model = build_retinanet(3, backbone="tiny", octave_base_scale=2.0)
    with torch.no_grad():
        model.head.cls_logits.weight.zero_()
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    out = model(torch.rand(1, 3, 64, 64), targets)
    num = out["levels/num_neg"].sum() * 3
    p = 0.01
    per = 0.75 * p**2 * -math.log(1 - p)
    torch.testing.assert_close(out["loss_cls"], (num * per).float(), rtol=1e-4, atol=1e-6)  # normalised by max(1, 0 pos)
    assert out["loss_box"].item() == 0.0


def test_eval_returns_detections_in_image():
    model = build_retinanet(3, backbone="tiny", score_thresh=0.0).eval()
    dets = model(torch.rand(2, 3, 96, 128), image_sizes=torch.tensor([[96, 128], [80, 100]]))
    assert len(dets) == 2
    for d, (h, w) in zip(dets, [(96, 128), (80, 100)]):
        assert d["boxes"].shape[1] == 4 and len(d["boxes"]) == len(d["scores"]) == len(d["labels"]) <= 100
        assert (d["boxes"][:, [0, 2]] <= w).all() and (d["boxes"][:, [1, 3]] <= h).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()


def test_overfits_one_image(overfit):
    torch.manual_seed(0)
    model = build_retinanet(3, backbone="tiny", octave_base_scale=2.0)
    img = torch.rand(1, 3, 128, 128)
    tgt = make_targets()[:1]
    losses, out = overfit(model, img, tgt, steps=40)
    loss, first = out["loss_cls"] + out["loss_box"], losses[0]
    assert loss.item() < 0.3 * first


def test_postprocess_groups_by_image_and_class():
    box = torch.tensor([10.0, 10, 50, 50])
    boxes = box.expand(2, 4, 4).clone()  # same box everywhere
    scores = torch.zeros(2, 4, 2)
    scores[0, 0, 0], scores[0, 1, 0], scores[0, 2, 1] = 0.9, 0.8, 0.7  # two of class 0 overlap -> one kept
    scores[1, 3, 0] = 0.6  # the same box in another image is not suppressed
    out = postprocess_dense(scores, boxes, [4], torch.tensor([[100, 100], [100, 100]]), score_thresh=0.05)
    assert out[0]["scores"].tolist() == [0.8999999761581421, 0.699999988079071]
    assert out[0]["labels"].tolist() == [0, 1]
    assert out[1]["scores"].tolist() == [0.6000000238418579] and out[1]["labels"].tolist() == [0]
    capped = postprocess_dense(scores, boxes, [4], torch.tensor([[100, 100]] * 2), max_detections=1)
    assert len(capped[0]["scores"]) == 1


def test_pos_prob_statistic_is_mean_true_class_probability():
    torch.manual_seed(0)
    model = build_retinanet(3, backbone="tiny", octave_base_scale=2.0)
    with torch.no_grad():
        model.head.cls_logits.weight.zero_()
        model.head.cls_logits.bias.fill_(0.0)  # every probability is exactly 0.5
    out = model(torch.rand(2, 3, 128, 128), make_targets())
    has_pos = out["levels/num_pos"] > 0
    torch.testing.assert_close(out["levels/pos_prob"][has_pos], torch.full((int(has_pos.sum()),), 0.5))
    assert (out["levels/pos_prob"][~has_pos] == 0).all()

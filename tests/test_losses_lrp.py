"""The three level normalisations of UMOP's Eq. 1 (minidet.losses.lrp), by hand and on a detector's batch."""
import pytest
import torch

from minidet.cli import build_parser, level_norm
from minidet.errors import ConfigError
from minidet.losses import LRP_FORMS, lrp_form, normalize_level_losses
from minidet.models import build_atss, build_dw, build_fcos, build_retinanet


def by_hand(sums: list[float], num_pos: list[float], form: str) -> list[float]:
    """The readings written out level by level, independently of the library."""
    total = max(1.0, sum(num_pos))
    if form == "own_positives":  # each level by its own positives, then the mean over levels
        return [s / max(1.0, n) / len(sums) for s, n in zip(sums, num_pos)]
    # "pooled", and the authors' code: every level's avg_factor is the batch's total, levels summed (no 1/L)
    return [s / total for s in sums]


@pytest.mark.parametrize("form", LRP_FORMS)
def test_forms_by_hand_with_a_level_without_positives(form):
    sums, num_pos = [6.0, 1.0, 0.5], [3.0, 0.0, 1.0]  # level 1 has no positive: its divisor is max(1, 0) = 1
    parts = normalize_level_losses(torch.tensor(sums), torch.tensor(num_pos), form)
    torch.testing.assert_close(parts, torch.tensor(by_hand(sums, num_pos, form)))


def test_hand_numbers():
    sums, num_pos = torch.tensor([6.0, 1.0]), torch.tensor([3.0, 0.0])
    # own positives: (6 / 3 + 1 / max(1, 0)) / 2 levels; pooled and code: (6 + 1) / 3 positives
    torch.testing.assert_close(normalize_level_losses(sums, num_pos, "own_positives"), torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(normalize_level_losses(sums, num_pos, "code"), torch.tensor([2.0, 1 / 3]))
    # no positive anywhere: every divisor is 1
    torch.testing.assert_close(normalize_level_losses(sums, torch.zeros(2), "code"), sums)
    torch.testing.assert_close(normalize_level_losses(sums, torch.zeros(2), "own_positives"), sums / 2)


def test_boolean_aliases():
    assert lrp_form(False) == "pooled" and lrp_form(True) == "own_positives"
    assert [lrp_form(f) for f in LRP_FORMS] == list(LRP_FORMS)
    sums, num_pos = torch.tensor([6.0, 1.0]), torch.tensor([3.0, 0.0])
    torch.testing.assert_close(normalize_level_losses(sums, num_pos, True), normalize_level_losses(sums, num_pos, "own_positives"))
    torch.testing.assert_close(normalize_level_losses(sums, num_pos, False), normalize_level_losses(sums, num_pos, "pooled"))
    with pytest.raises(ValueError, match="level_resampling"):
        lrp_form("per_level")


def make_targets():
    return [
        {"boxes": torch.tensor([[10.0, 12, 40, 50], [60, 60, 120, 110], [4, 70, 20, 90]]), "labels": torch.tensor([1, 2, 0])},
        {"boxes": torch.tensor([[30.0, 20, 100, 100]]), "labels": torch.tensor([1])},
    ]


@pytest.mark.parametrize("build", [build_retinanet, build_atss, build_fcos])
def test_released_code_lrp_equals_the_pooled_loss_on_a_batch(build):
    """What lesson 04 states: on one forward of an (untrained) detector with PFL, the UMOP authors' level-wise
    resampling gives the pooled classification loss, to the last bit; minidet's own-positives reading differs.
    The per-level raw sums recovered from each reading agree (``part * divisor``, divisors by hand)."""
    torch.manual_seed(0)
    model = build(3, cls_loss="pfl", level_resampling="code")
    images, targets = torch.rand(2, 3, 128, 128), make_targets()
    outs = {}
    for form in LRP_FORMS:
        model.level_norm = form
        with torch.no_grad():
            outs[form] = model(images, targets)
    assert model.level_resampling  # "code" is a form of level-wise resampling, even if it equals pooling
    assert torch.equal(outs["code"]["loss_cls"], outs["pooled"]["loss_cls"])
    assert torch.equal(outs["code"]["levels/loss_cls"], outs["pooled"]["levels/loss_cls"])
    num_pos = outs["pooled"]["levels/num_pos"]
    levels = num_pos.numel()
    raw_pooled = outs["pooled"]["levels/loss_cls"] * num_pos.sum().clamp(min=1)
    raw_own = outs["own_positives"]["levels/loss_cls"] * num_pos.clamp(min=1) * levels
    torch.testing.assert_close(raw_own, raw_pooled, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(outs["own_positives"]["loss_cls"], outs["pooled"]["loss_cls"])


def test_dense_detectors_accept_the_names_and_dw_refuses_resampling():
    assert build_retinanet(3).level_norm == "pooled" and not build_retinanet(3).level_resampling
    assert build_retinanet(3, level_resampling=True).level_norm == "own_positives"
    assert build_atss(3, level_resampling="code").level_norm == "code"
    assert build_dw(3, level_resampling=False).level_norm == "pooled"
    for form in ("code", "own_positives", True):
        with pytest.raises(ValueError, match="level_resampling"):
            build_dw(3, level_resampling=form)
    with pytest.raises(ValueError, match="level_resampling"):
        build_fcos(3, level_resampling="mean")


def test_cli_chooses_the_reading():
    parse = lambda *a: build_parser().parse_args(["train", "--model", "atss", *a])  # noqa: E731
    assert level_norm(parse()) is False
    assert level_norm(parse("--lrp")) is True
    assert level_norm(parse("--level-norm", "code")) == "code"
    assert level_norm(parse("--lrp", "--level-norm", "own_positives")) == "own_positives"
    with pytest.raises(ConfigError, match="--lrp"):
        level_norm(parse("--lrp", "--level-norm", "code"))
    with pytest.raises(SystemExit):
        parse("--level-norm", "mean")

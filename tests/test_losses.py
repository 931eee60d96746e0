"""Losses against hand-computed values on 2-class, 1×2×2 volumes."""

import math

import pytest
import torch

from medseg.cvlibs.registry import LOSSES
from medseg.models.losses import set_default_ignore_index
from medseg.models.losses.bce import BCELoss
from medseg.models.losses.computation import loss_computation
from medseg.models.losses.cross_entropy import CrossEntropyLoss
from medseg.models.losses.dice import DiceLoss
from medseg.models.losses.mixed import MixedLoss

LN3 = math.log(3.0)


def two_class_logits(fg: list[list[int]]) -> torch.Tensor:
    """Logits (N, 2, 1, 2, 2): class 1 gets p=0.75 where fg is 1 and p=0.25 elsewhere."""
    sign = torch.tensor(fg, dtype=torch.float32).reshape(-1, 1, 2, 2) * 2 - 1
    return torch.stack([torch.zeros_like(sign), sign * LN3], dim=1)


def labels_of(values: list[list[int]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64).reshape(-1, 1, 2, 2)


# Sample A: p(class 1) = [.75, .75, .25, .25], labels [1, 0, 0, 0].
LOGITS_A = two_class_logits([[1, 1, 0, 0]])
LABELS_A = labels_of([[1, 0, 0, 0]])


def test_logits_helper_gives_intended_probabilities():
    probs = torch.softmax(LOGITS_A, dim=1)[0, 1].flatten()
    assert torch.allclose(probs, torch.tensor([0.75, 0.75, 0.25, 0.25]))


# --- cross-entropy -----------------------------------------------------------------------


def test_cross_entropy_unweighted():
    # -log p[label] per voxel: .75 (label 1), .25 (label 0 where p0=.25), .75, .75
    expected = (3 * -math.log(0.75) - math.log(0.25)) / 4
    assert CrossEntropyLoss()(LOGITS_A, LABELS_A).item() == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_class_weights_give_weighted_mean():
    # voxel 0 has label 1 (weight 3), the others label 0 (weight 1)
    expected = (3 * -math.log(0.75) - math.log(0.25) - 2 * math.log(0.75)) / (3 + 1 + 1 + 1)
    loss = CrossEntropyLoss(weight=[1.0, 3.0])(LOGITS_A, LABELS_A)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_ignore_index_and_all_ignored():
    labels = labels_of([[1, 255, 0, 0]])
    loss = CrossEntropyLoss(ignore_index=255)(LOGITS_A, labels)
    assert loss.item() == pytest.approx(-math.log(0.75), rel=1e-5)
    all_ignored = CrossEntropyLoss(ignore_index=255)(LOGITS_A, labels_of([[255] * 4]))
    assert all_ignored.item() == 0.0


def test_cross_entropy_errors_name_shapes_and_ids():
    with pytest.raises(ValueError, match=r"\(1, 2, 2\).*\(1, 2, 1, 2, 2\).*\(1, 1, 2, 2\)"):
        CrossEntropyLoss()(LOGITS_A, LABELS_A[:, 0])
    with pytest.raises(ValueError, match=r"ids \[255\] outside 0\.\.1"):
        CrossEntropyLoss()(LOGITS_A, labels_of([[1, 255, 0, 0]]))
    with pytest.raises(ValueError, match="weight has 3 entries"):
        CrossEntropyLoss(weight=[1, 1, 1])(LOGITS_A, LABELS_A)
    with pytest.raises(ValueError, match="integer"):
        CrossEntropyLoss()(LOGITS_A, LABELS_A.float())


# --- Dice --------------------------------------------------------------------------------
# Sample A, smooth=0: class 1: tp=.75, sum p=2, sum g=1 -> 1.5/3 = .5
#                     class 0: tp=.25+.75+.75=1.75, sum p=2, sum g=3 -> 3.5/5 = .7


def test_dice_with_and_without_background():
    assert DiceLoss(smooth=0)(LOGITS_A, LABELS_A).item() == pytest.approx(1 - 0.6, rel=1e-5)
    no_bg = DiceLoss(smooth=0, include_background=False)(LOGITS_A, LABELS_A)
    assert no_bg.item() == pytest.approx(1 - 0.5, rel=1e-5)


def test_dice_ignore_index_masks_numerator_and_denominator():
    # voxel 1 ignored; class 1: tp=.75, sum p=1.25, g=1 -> 2/3; class 0: tp=1.5, p=1.75, g=2 -> .8
    loss = DiceLoss(smooth=0, ignore_index=255)(LOGITS_A, labels_of([[1, 255, 0, 0]]))
    assert loss.item() == pytest.approx(1 - (2 / 3 + 0.8) / 2, rel=1e-5)


def test_dice_batch_versus_per_sample():
    # sample B: p(class 1)=.25 everywhere, all background -> foreground dice 0 (smooth=0)
    logits = torch.cat([LOGITS_A, two_class_logits([[0, 0, 0, 0]])])
    labels = torch.cat([LABELS_A, labels_of([[0, 0, 0, 0]])])
    per_sample = DiceLoss(smooth=0, include_background=False)(logits, labels)
    assert per_sample.item() == pytest.approx(1 - (0.5 + 0.0) / 2, rel=1e-5)
    # batch: tp=.75, sum p=2+1, sum g=1 -> 1.5/4
    batch = DiceLoss(smooth=0, include_background=False, batch_dice=True)(logits, labels)
    assert batch.item() == pytest.approx(1 - 1.5 / 4, rel=1e-5)


def test_dice_class_weights():
    loss = DiceLoss(smooth=0, weight=[1.0, 3.0])(LOGITS_A, LABELS_A)
    assert loss.item() == pytest.approx(1 - (0.7 * 1 + 0.5 * 3) / 4, rel=1e-5)


def test_dice_perfect_prediction_is_zero_even_with_an_absent_class():
    labels = torch.tensor([[[[1, 0], [2, 0]]], [[[0, 0], [0, 0]]]])  # class 1, 2 absent in sample 2
    logits = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float() * 40 - 20
    assert DiceLoss()(logits, labels).item() == pytest.approx(0.0, abs=1e-6)
    assert DiceLoss(batch_dice=True)(logits, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_single_channel_sigmoid_uses_foreground():
    logits = torch.tensor([LN3, LN3, -LN3, -LN3]).reshape(1, 1, 1, 2, 2)  # sigmoid .75 .75 .25 .25
    labels = labels_of([[2, 0, 0, 0]])  # any id > 0 is foreground
    loss = DiceLoss(smooth=0, sigmoid_norm=True)(logits, labels)
    assert loss.item() == pytest.approx(1 - 1.5 / 3, rel=1e-5)
    with pytest.raises(ValueError, match="sigmoid_norm=True"):
        DiceLoss()(logits, labels)


def test_dice_gradient_is_finite():
    logits = LOGITS_A.clone().requires_grad_(True)
    DiceLoss(ignore_index=255)(logits, labels_of([[1, 255, 0, 0]])).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# --- BCE ---------------------------------------------------------------------------------


def test_bce_binary_channel():
    logits = torch.tensor([LN3, LN3, -LN3, -LN3]).reshape(1, 1, 1, 2, 2)
    labels = labels_of([[1, 0, 0, 255]])
    # targets 1,0,0 with p .75,.75,.25; voxel 3 ignored
    expected = (-math.log(0.75) - math.log(0.25) - math.log(0.75)) / 3
    assert BCELoss(ignore_index=255)(logits, labels).item() == pytest.approx(expected, rel=1e-5)
    # pos_weight scales the positive term only
    weighted = (-2 * math.log(0.75) - math.log(0.25) - math.log(0.75)) / 3
    loss = BCELoss(ignore_index=255, pos_weight=2.0)(logits, labels)
    assert loss.item() == pytest.approx(weighted, rel=1e-5)


def test_bce_multi_label_one_hot():
    # channel 0 has logit 0 (sigmoid .5) everywhere; channel 1 sigmoid .75/.75/.25/.25 vs the
    # one-hot of class 1, [1, 0, 0, 0]
    channel0 = 4 * -math.log(0.5)
    channel1 = -math.log(0.75) - math.log(1 - 0.75) - 2 * math.log(1 - 0.25)
    expected = (channel0 + channel1) / 8
    assert BCELoss()(LOGITS_A, LABELS_A).item() == pytest.approx(expected, rel=1e-5)


# --- MixedLoss, ignore_index defaults, loss_computation ----------------------------------


def test_mixed_loss_is_weighted_sum_with_named_terms():
    mixed = MixedLoss([CrossEntropyLoss(), DiceLoss(smooth=0)], coef=[1.0, 0.5])
    ce = (3 * -math.log(0.75) - math.log(0.25)) / 4
    assert mixed(LOGITS_A, LABELS_A).item() == pytest.approx(ce + 0.5 * 0.4, rel=1e-5)
    terms = mixed.terms(LOGITS_A, LABELS_A)
    assert list(terms) == ["CrossEntropyLoss", "DiceLoss"]
    assert terms["DiceLoss"].item() == pytest.approx(0.2, rel=1e-5)
    twice = MixedLoss([DiceLoss(smooth=0), DiceLoss(smooth=0)], coef=[1, 1])
    assert list(twice.terms(LOGITS_A, LABELS_A)) == ["DiceLoss", "DiceLoss_2"]


def test_mixed_loss_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="2 losses"):
        MixedLoss([CrossEntropyLoss(), DiceLoss()], coef=[1.0])


def test_set_default_ignore_index_recurses_and_keeps_explicit_values():
    inner = MixedLoss([DiceLoss(), BCELoss(ignore_index=7)], coef=[1, 1])
    outer = MixedLoss([CrossEntropyLoss(), inner], coef=[1, 1])
    set_default_ignore_index(outer, 255)
    assert outer.ignore_index == 255 and inner.ignore_index == 255
    assert outer.losses[0].ignore_index == 255
    assert inner.losses[0].ignore_index == 255
    assert inner.losses[1].ignore_index == 7
    from_ctor = MixedLoss([DiceLoss(), DiceLoss(ignore_index=3)], coef=[1, 1], ignore_index=9)
    assert [m.ignore_index for m in from_ctor.losses] == [9, 3]


def test_losses_are_registered():
    for name in ("CrossEntropyLoss", "DiceLoss", "BCELoss", "MixedLoss"):
        assert name in LOSSES


def test_loss_computation_single_output():
    losses = {"types": [MixedLoss([CrossEntropyLoss(), DiceLoss(smooth=0)], [1, 1])], "coef": [2]}
    total, terms = loss_computation(LOGITS_A, LABELS_A, losses)
    ce = (3 * -math.log(0.75) - math.log(0.25)) / 4
    assert total.item() == pytest.approx(2 * (ce + 0.4), rel=1e-5)
    assert terms == pytest.approx({"CrossEntropyLoss": 2 * ce, "DiceLoss": 0.8}, rel=1e-5)
    assert all(isinstance(v, float) for v in terms.values())


def test_loss_computation_deep_supervision_shares_one_type():
    coef = [1.0, 0.5, 0.25, 0.125]
    losses = {"types": [DiceLoss(smooth=0)], "coef": coef}
    total, terms = loss_computation([LOGITS_A] * 4, LABELS_A, losses)
    assert total.item() == pytest.approx(0.4 * sum(coef), rel=1e-5)
    assert terms["DiceLoss"] == pytest.approx(0.4 * sum(coef), rel=1e-5)


def test_loss_computation_downsamples_labels_for_smaller_outputs():
    labels = torch.zeros(1, 2, 4, 4, dtype=torch.int64)
    labels[:, :, :2, :2] = 1  # class 1 fills the top-left quarter
    low = torch.full((1, 2, 1, 2, 2), -20.0)
    low[:, 0] = 20.0
    low[:, 0, :, 0, 0], low[:, 1, :, 0, 0] = -20.0, 20.0  # predicts the same quarter
    total, _ = loss_computation([low], labels, {"types": [DiceLoss()], "coef": [1]})
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(1, 3, 3\).*\(2, 4, 4\)"):
        loss_computation(torch.zeros(1, 2, 1, 3, 3), labels, {"types": [DiceLoss()], "coef": [1]})


def test_loss_computation_mismatched_counts_name_them():
    losses = {"types": [DiceLoss(), CrossEntropyLoss()], "coef": [1.0, 0.5, 0.25]}
    with pytest.raises(ValueError, match="2 types and 3 coefs for 3 model outputs"):
        loss_computation([LOGITS_A] * 3, LABELS_A, losses)
    with pytest.raises(ValueError, match="1 types and 2 coefs for 1 model outputs"):
        loss_computation(LOGITS_A, LABELS_A, {"types": [DiceLoss()], "coef": [1, 1]})

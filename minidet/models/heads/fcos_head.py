"""FCOS head (Tian et al., ICCV 2019, Sec. 3.1-3.3 and Fig. 2; the authors' improved code): a
classification tower and a regression tower shared by all levels, four distances per point, a
centerness branch on the regression tower and a learnable scale per level."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from minidet.models.heads.atss_head import ATSSHead


class FCOSHead(ATSSHead):
    """ATSS's head with one point per cell, whose box branch regresses the distances ``(l, t, r, b)``
    from the point to the box's sides in units of the level's stride:

    .. math:: (l, t, r, b) = \\max\\big(0,\\ s_l \\cdot \\mathrm{conv}(\\mathrm{tower}_{reg}(P_l))\\big)

    with ``s_l`` the level's learnable :class:`~minidet.models.heads.Scale`. The paper (Sec. 3.1) writes
    ``exp(s_l x)`` in pixels; the authors' later code (``norm_reg_targets``, also mmdetection's) divides
    the targets by the stride and uses ReLU, which is what this head does. Centerness (Eq. 3) comes from
    the regression tower (``centerness_on_reg``, the authors' improvement over the paper's cls tower).

    Args:
        in_channels, num_classes, num_levels, num_convs, prior_prob, norm, conv_bias: see
            :class:`~minidet.models.heads.ATSSHead` (GroupNorm and prior 0.01 by default;
            ``conv_bias=True`` is torchvision's FCOS head).
    """

    def __init__(self, in_channels: int, num_classes: int, num_levels: int = 5, num_convs: int = 4,
                 prior_prob: float = 0.01, norm: str | None = "gn", conv_bias: bool | None = None) -> None:
        super().__init__(in_channels, num_classes, 1, num_levels, num_convs, prior_prob, norm, conv_bias)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``feats``: FPN levels ``(B, C_in, H_l, W_l)``.

        Returns:
            ``cls_logits`` ``(B, N, C)``, ``distances`` ``(B, N, 4)`` (``>= 0``, stride units) and
            ``centerness`` logits ``(B, N)``, ``N = sum_l H_l W_l``, in the point generator's order.
        """
        cls, box, ctr = super().forward(feats)
        return cls, F.relu(box), ctr

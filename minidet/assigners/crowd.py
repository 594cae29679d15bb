"""Crowd regions (COCO ``iscrowd=1``) as ignore regions in assignment, as Detectron and mmdetection do.

A crowd box marks many objects annotated as one region. Training on its anchors as negatives would teach the
detector that these objects are background; dropping the region from the targets does exactly that. Instead,
an element (anchor, point cell, proposal) whose box lies mostly inside a crowd box is *ignored*: neither a
positive nor a negative. "Mostly inside" is measured by the intersection over the element's own area,

.. math:: \\mathrm{IoF}(e, c) = \\frac{|e \\cap c|}{|e|} > t_{\\mathrm{ignore}}, \\qquad t_{\\mathrm{ignore}} = 0.5,

mmdetection's ``ignore_iof_thr``. Positives keep priority: an element that matches a real ground truth stays
positive even inside a crowd box (a real annotation is stronger evidence than a region label).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE_IOF_THR = 0.5


def box_iof(elements: Tensor, regions: Tensor) -> Tensor:
    """Intersection over the element's own area, batched.

    Args:
        elements: ``(A, 4)`` (shared by the batch) or ``(B, A, 4)`` xyxy boxes.
        regions: ``(B, M, 4)`` xyxy boxes.

    Returns:
        ``(B, A, M)`` values in [0, 1]; 0 for an element of zero area.
    """
    e = elements[None] if elements.dim() == 2 else elements  # (B or 1, A, 4)
    lt = torch.maximum(e[:, :, None, :2], regions[:, None, :, :2])  # (B, A, M, 2)
    rb = torch.minimum(e[:, :, None, 2:], regions[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)  # (B, A, M)
    area = (e[..., 2:] - e[..., :2]).clamp(min=0).prod(-1)  # (B or 1, A)
    return inter / area.clamp(min=1e-6)[..., None]


@dataclass
class CrowdRegions:
    """The crowd boxes of a batch, padded: ``boxes`` ``(B, M, 4)``, ``valid`` ``(B, M)`` bool. Build with
    :meth:`from_targets`; ``M == 0`` when no image of the batch has a crowd box (then nothing is computed)."""

    boxes: Tensor
    valid: Tensor
    iof_thr: float = IGNORE_IOF_THR

    @classmethod
    def from_targets(cls, targets: list[dict[str, Tensor]], device: torch.device, iof_thr: float = IGNORE_IOF_THR
                     ) -> CrowdRegions:
        """Pad the ``crowd_boxes`` ``(M_i, 4)`` entries of the targets (absent = none; see
        :class:`~minidet.data.CocoDetection` with ``crowd="ignore"``). Reading the shapes needs no host sync."""
        num = [len(t["crowd_boxes"]) if "crowd_boxes" in t else 0 for t in targets]
        m = max(num, default=0)
        boxes = torch.zeros(len(targets), m, 4, device=device)
        valid = torch.zeros(len(targets), m, dtype=torch.bool, device=device)
        for i, t in enumerate(targets):
            if num[i]:
                boxes[i, : num[i]] = t["crowd_boxes"].to(device=device, dtype=boxes.dtype)
                valid[i, : num[i]] = True
        return cls(boxes, valid, iof_thr)

    @torch.no_grad()
    def ignored(self, elements: Tensor) -> Tensor | None:
        """``(B, A)`` bool: elements ``(A, 4)`` or ``(B, A, 4)`` with IoF above the threshold with some crowd box of
        their image; None when the batch has no crowd box."""
        if self.boxes.shape[1] == 0:
            return None
        iof = box_iof(elements.to(self.boxes.dtype), self.boxes)  # (B, A, M)
        return ((iof > self.iof_thr) & self.valid[:, None, :]).any(-1)

    def negatives(self, elements: Tensor, neg: Tensor) -> Tensor:
        """``neg`` ``(B, A)`` without the ignored elements (``neg`` itself when there is no crowd box)."""
        ign = self.ignored(elements)
        return neg if ign is None else neg & ~ign

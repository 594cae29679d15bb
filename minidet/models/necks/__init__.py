"""Necks: multi-scale feature fusion after the backbone."""
from minidet.models.necks.bfp import BalancedFPN, NonLocal2d
from minidet.models.necks.fpn import FPN

__all__ = ["BalancedFPN", "FPN", "NonLocal2d"]

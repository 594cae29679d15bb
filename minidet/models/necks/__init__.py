"""Necks: multi-scale feature fusion after the backbone."""
from minidet.models.necks.fpn import FPN

__all__ = ["FPN"]

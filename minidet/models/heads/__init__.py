"""Detection heads."""
from minidet.models.heads.retina_head import RetinaHead, conv_tower, flatten_level

__all__ = ["RetinaHead", "conv_tower", "flatten_level"]

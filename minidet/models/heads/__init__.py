"""Detection heads."""
from minidet.models.heads.atss_head import ATSSHead, Scale
from minidet.models.heads.retina_head import RetinaHead, conv_tower, flatten_level

__all__ = ["ATSSHead", "RetinaHead", "Scale", "conv_tower", "flatten_level"]

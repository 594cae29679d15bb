"""Detection heads."""
from minidet.models.heads.atss_head import ATSSHead, Scale
from minidet.models.heads.fcos_head import FCOSHead
from minidet.models.heads.retina_head import RetinaHead, conv_tower, flatten_level

__all__ = ["ATSSHead", "FCOSHead", "RetinaHead", "Scale", "conv_tower", "flatten_level"]

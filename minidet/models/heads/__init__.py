"""Detection heads."""
from minidet.models.heads.atss_head import ATSSHead, Scale
from minidet.models.heads.box_refine import edge_offsets, refine_distances, sample_edges
from minidet.models.heads.dw_head import DWHead
from minidet.models.heads.fcos_head import FCOSHead
from minidet.models.heads.retina_head import RetinaHead, conv_tower, flatten_level

__all__ = ["ATSSHead", "DWHead", "FCOSHead", "RetinaHead", "Scale", "conv_tower", "edge_offsets", "flatten_level",
           "refine_distances", "sample_edges"]

"""Detection heads."""
from minidet.models.heads.atss_head import ATSSHead, Scale
from minidet.models.heads.box_refine import edge_offsets, refine_distances, sample_edges
from minidet.models.heads.dw_head import DWHead
from minidet.models.heads.fcos_head import FCOSHead
from minidet.models.heads.retina_head import RetinaHead, conv_tower, flatten_level
from minidet.models.heads.guided_deform import GuidedDeformConv, OffsetNet, deform_conv2d_sampled, sampling_points
from minidet.models.heads.s_head import HeadOutput, SHead
from minidet.models.heads.t_head import THead

__all__ = ["ATSSHead", "DWHead", "FCOSHead", "RetinaHead", "Scale", "conv_tower", "edge_offsets", "flatten_level",
           "refine_distances", "sample_edges", "GuidedDeformConv", "HeadOutput", "OffsetNet", "SHead", "THead",
           "deform_conv2d_sampled", "sampling_points"]

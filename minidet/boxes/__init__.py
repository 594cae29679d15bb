"""Boxes: coders (anchor deltas, point distances), batched IoU, clipping, padding of targets, centerness."""
from minidet.boxes.centerness import centerness_target
from minidet.boxes.coders import DeltaXYWHCoder, LTRBCoder
from minidet.boxes.ops import batched_box_iou, clip_boxes, pad_targets, rescale_boxes

__all__ = ["DeltaXYWHCoder", "LTRBCoder", "batched_box_iou", "centerness_target", "clip_boxes", "pad_targets", "rescale_boxes"]

"""Datasets, augmentation and batching: synthetic shapes written as COCO, a COCO dataset on
pycocotools, box-aware ``transforms.v2`` pipelines, and padded ``ImageBatch`` collation."""
from minidet.data.coco import CocoDetection
from minidet.data.collate import ImageBatch, collate_detection
from minidet.data.shapes import SHAPE_CLASSES, ShapesConfig, generate_shapes
from minidet.data.transforms import build_transforms

__all__ = ["SHAPE_CLASSES", "ShapesConfig", "generate_shapes", "CocoDetection", "build_transforms",
           "ImageBatch", "collate_detection"]

"""The plain-dataclass configuration of the synthetic shapes dataset."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from minidet.data.shapes_geometry import ALL_SHAPES, SHAPE_CLASSES
from minidet.errors import ConfigError


@dataclass(frozen=True)
class ShapesConfig:
    """Everything that determines the bytes of a generated shapes dataset.

    Sizes are pixels. An object's *size* is the longer side of its tight box before clipping to the
    image, drawn log-uniformly from ``[min_object_size, max_object_frac * image_size]`` so every
    FPN level (strides 8..128) sees objects. ``occlusion_max`` is the largest fraction of an
    object's in-image pixels that later shapes may cover.

    ``classes`` names the object classes (category ids ``1..len(classes)``), chosen among
    :data:`~minidet.data.shapes_geometry.ALL_SHAPES`. With probability ``crowd_prob`` an image also gets a
    *crowd region*: a tight group of 9-16 small shapes of one class, annotated as one ``iscrowd=1`` box (as
    COCO annotates a crowd of people), drawn before the other objects.
    """

    image_size: int = 256
    num_train: int = 2000
    num_val: int = 300
    min_objects: int = 1
    max_objects: int = 12
    min_object_size: float = 8
    max_object_frac: float = 0.6
    num_distractors: tuple[int, int] = (0, 4)
    occlusion_max: float = 0.5
    min_inside_frac: float = 0.5  # an object may leave the image only while this much of it stays in
    seed: int = 0
    classes: tuple[str, ...] = SHAPE_CLASSES
    crowd_prob: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("num_distractors", "classes"):
                kind = int if f.name == "num_distractors" else str
                ok = isinstance(value, (list, tuple)) and all(type(v) is kind for v in value)
            else:
                ok = type(value) is int or (f.type == "float" and type(value) is float)
            if not ok:
                raise ConfigError(f"ShapesConfig.{f.name} = {value!r} has the wrong type (expected {f.type})")
        object.__setattr__(self, "num_distractors", tuple(self.num_distractors))
        object.__setattr__(self, "classes", tuple(self.classes))
        checks = [
            ("image_size", self.image_size >= 32, "must be an int >= 32"),
            ("num_train", self.num_train >= 0, "must be >= 0"),
            ("num_val", self.num_val >= 0, "must be >= 0"),
            ("min_objects", 0 <= self.min_objects <= self.max_objects, "must be in [0, max_objects]"),
            ("min_object_size", 1 <= self.min_object_size <= self.max_object_frac * self.image_size,
             "must be in [1, max_object_frac * image_size]"),
            ("max_object_frac", 0 < self.max_object_frac <= 1, "must be in (0, 1]"),
            ("num_distractors", len(self.num_distractors) == 2
             and 0 <= self.num_distractors[0] <= self.num_distractors[1], "must be (lo, hi) with 0 <= lo <= hi"),
            ("occlusion_max", 0 <= self.occlusion_max < 1, "must be in [0, 1)"),
            ("min_inside_frac", 0 < self.min_inside_frac <= 1, "must be in (0, 1]"),
            ("classes", len(self.classes) >= 1 and len(set(self.classes)) == len(self.classes)
             and set(self.classes) <= set(ALL_SHAPES), f"must be distinct names among {ALL_SHAPES}"),
            ("crowd_prob", 0 <= self.crowd_prob <= 1, "must be a probability in [0, 1]"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"ShapesConfig.{name} = {getattr(self, name)!r} {rule}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["num_distractors"] = list(self.num_distractors)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShapesConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"ShapesConfig: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


# Variants of the default data that stress what a paper targets (issue: "data where the imbalance bites").
# The default draws sides log-uniformly from 8 px to 60 % of the image, so about half the objects fall on P3
# (lesson 01). "small" keeps every object under a quarter of the image and puts up to 20 in a scene: almost
# all objects, and so almost all positives, sit on P3-P4 while the coarse levels get few or none, the level
# imbalance UMOP's PFL and LRP address. "crowded" fills a scene with 10-30 objects that may hide up to 70 % of
# each other, plus more distractors: many anchors and proposals overlap an object partly (IoU 0.1-0.5), the
# hard negatives Libra R-CNN's IoU-balanced sampling is about.
SHAPES_VARIANTS: dict[str, ShapesConfig] = {
    "default": ShapesConfig(),
    "small": ShapesConfig(min_objects=4, max_objects=20, min_object_size=6, max_object_frac=0.25),
    "crowded": ShapesConfig(min_objects=10, max_objects=30, min_object_size=10, max_object_frac=0.35, occlusion_max=0.7,
                            num_distractors=(2, 8)),
}

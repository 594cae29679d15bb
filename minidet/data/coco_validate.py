"""Boundary check of a COCO detection json: every malformed record raises a DatasetError that names
the file, the record (``annotations[17] (id=42)``), the field and the offending value.

Boxes that overshoot the image by at most :data:`BOX_TOLERANCE` pixels are clipped in place (real
COCO has such boxes); a missing ``area`` is filled with the clipped box area; ``iscrowd`` defaults
to 0. Everything else about a record is left for pycocotools.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from minidet.errors import DatasetError

BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image before it counts as an error
_REQUIRED = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Reporter:
    """Formats ``<file>: <record>: field '<name>' = <value> <problem>`` messages."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, field: str, value: Any, problem: str) -> DatasetError:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return DatasetError(f"{self.path}: {where}: field '{field}' = {shown} {problem}")


def load_coco_json(path: str | Path) -> dict[str, Any]:
    """Read and validate the COCO json at ``path``; return its dict with boxes clipped.

    Raises:
        DatasetError: the file is missing, not JSON, or any record is malformed.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: annotation file not found") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not a readable JSON file ({e})") from e
    rep = _Reporter(path)
    if not isinstance(data, dict):
        raise rep.fail("top level", "<root>", type(data).__name__, "must be a JSON object")
    for key in _REQUIRED:
        if key not in data:
            raise DatasetError(f"{path}: top level: missing key '{key}' (found keys {sorted(data)})")
        if not isinstance(data[key], list):
            raise rep.fail("top level", key, type(data[key]).__name__, "must be a list")

    images = _check_records(rep, data, "images")
    for where, img in images.values():
        for field in ("width", "height"):
            if not _is_int(img[field]) or img[field] <= 0:
                raise rep.fail(where, field, img[field], "must be a positive integer")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise rep.fail(where, "file_name", img["file_name"], "must be a non-empty string")
    categories = _check_records(rep, data, "categories")
    if not categories:
        raise rep.fail("top level", "categories", [], "must hold at least one category")
    for where, cat in categories.values():
        if not isinstance(cat["name"], str):
            raise rep.fail(where, "name", cat["name"], "must be a string")
    annotations = _check_records(rep, data, "annotations")
    for where, ann in annotations.values():
        if ann["image_id"] not in images:
            raise rep.fail(where, "image_id", ann["image_id"], "is not the id of any image")
        if ann["category_id"] not in categories:
            raise rep.fail(where, "category_id", ann["category_id"],
                           f"is not a category id (known: {sorted(categories)})")
        _check_box(rep, where, ann, images[ann["image_id"]][1])
    return data


def _check_records(rep: _Reporter, data: dict[str, Any], key: str) -> dict[int, tuple[str, dict[str, Any]]]:
    """Check that ``data[key]`` holds dicts with the required fields and unique int ids;
    return ``{id: (where, record)}``."""
    by_id: dict[int, tuple[str, dict[str, Any]]] = {}
    for i, rec in enumerate(data[key]):
        where = f"{key}[{i}]"
        if not isinstance(rec, dict):
            raise rep.fail(where, "<record>", rec, "must be a JSON object")
        if "id" in rec:
            where += f" (id={rec['id']!r})"
        for field in _REQUIRED[key]:
            if field not in rec:
                raise DatasetError(f"{rep.path}: {where}: missing field '{field}' (found {sorted(rec)})")
        for field in ("id", "image_id", "category_id"):
            if field in rec and not _is_int(rec[field]):
                raise rep.fail(where, field, rec[field], "must be an integer")
        if rec["id"] in by_id:
            raise rep.fail(where, "id", rec["id"], f"is a duplicate of {by_id[rec['id']][0]}")
        by_id[rec["id"]] = (where, rec)
    return by_id


def _check_box(rep: _Reporter, where: str, ann: dict[str, Any], img: dict[str, Any]) -> None:
    """Validate ``ann['bbox']`` ([x, y, w, h]) against ``img`` and clip a small overshoot in place."""
    box = ann["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise rep.fail(where, "bbox", box, "must be a list of 4 finite numbers [x, y, w, h]")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise rep.fail(where, "bbox", box, "must have positive width and height")
    W, H = img["width"], img["height"]
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > W + t or y + h > H + t:
        raise rep.fail(where, "bbox", box, f"lies outside its {W}x{H} image by more than {t:g} px")
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        raise rep.fail(where, "bbox", box, f"has no area inside its {W}x{H} image")
    ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
    if "area" not in ann:
        ann["area"] = (x1 - x0) * (y1 - y0)
    elif not _is_number(ann["area"]) or ann["area"] < 0:
        raise rep.fail(where, "area", ann["area"], "must be a non-negative number")
    if ann.setdefault("iscrowd", 0) not in (0, 1):
        raise rep.fail(where, "iscrowd", ann["iscrowd"], "must be 0 or 1")

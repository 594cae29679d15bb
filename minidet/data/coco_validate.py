"""Boundary check of a COCO detection json: every malformed record is reported with the file, the record
(``annotations[17] (id=42)``), the field and the offending value.

:func:`check_coco_json` collects every problem (``minidet check-data`` prints them all);
:func:`load_coco_json` raises a DatasetError at the first one, or with ``skip_bad=True`` drops the bad
records (an annotation of a dropped image is dropped with it) and says how many.

Boxes that overshoot the image by at most :data:`BOX_TOLERANCE` pixels are clipped in place (real
COCO has such boxes); a missing ``area`` is filled with the clipped box area; ``iscrowd`` defaults
to 0. Everything else about a record is left for pycocotools.
"""
from __future__ import annotations

import json
import math
import warnings
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
    """Collects ``<file>: <record>: field '<name>' = <value> <problem>`` messages and the bad records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.bad: set[tuple[str, int]] = set()  # (section, index) of every record with a problem

    def add(self, rec: tuple[str, int], where: str, field: str, value: Any, problem: str) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        self.problems.append(f"{self.path}: {where}: field '{field}' = {shown} {problem}")
        self.bad.add(rec)

    def missing(self, rec: tuple[str, int], where: str, field: str, found: list[str]) -> None:
        self.problems.append(f"{self.path}: {where}: missing field '{field}' (found {found})")
        self.bad.add(rec)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: annotation file not found") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not a readable JSON file ({e})") from e


def check_coco_json(path: str | Path, data: dict[str, Any] | None = None) -> tuple[dict[str, Any], _Reporter]:
    """Check every record of the COCO json at ``path`` (or of ``data`` read from it); small box
    overshoots are clipped in place. Returns the data and a reporter whose ``problems`` lists every
    problem and whose ``bad`` holds the ``(section, index)`` of every bad record.

    Raises:
        DatasetError: only when the file itself is unusable (missing, not JSON, no images/annotations/
            categories lists), since then no record can be checked.
    """
    path = Path(path)
    data = _read(path) if data is None else data
    rep = _Reporter(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level: field '<root>' = {type(data).__name__!r} must be a JSON object")
    for key in _REQUIRED:
        if key not in data:
            raise DatasetError(f"{path}: top level: missing key '{key}' (found keys {sorted(data)})")
        if not isinstance(data[key], list):
            raise DatasetError(f"{path}: top level: field '{key}' = {type(data[key]).__name__!r} must be a list")

    images = _check_records(rep, data, "images")
    for rec, (where, img) in list(images.items()):
        for field in ("width", "height"):
            if not _is_int(img[field]) or img[field] <= 0:
                rep.add(("images", rec), where, field, img[field], "must be a positive integer")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            rep.add(("images", rec), where, "file_name", img["file_name"], "must be a non-empty string")
    categories = _check_records(rep, data, "categories")
    if not categories and not any(k == "categories" for k, _ in rep.bad):
        raise DatasetError(f"{path}: top level: field 'categories' = [] must hold at least one category")
    for rec, (where, cat) in categories.items():
        if not isinstance(cat["name"], str):
            rep.add(("categories", rec), where, "name", cat["name"], "must be a string")
    image_by_id = {img["id"]: (i, img) for i, (_, img) in images.items()}
    cat_ids = {cat["id"] for _, cat in categories.values()}
    for rec, (where, ann) in _check_records(rep, data, "annotations").items():
        key = ("annotations", rec)
        if ann["image_id"] not in image_by_id:
            rep.add(key, where, "image_id", ann["image_id"], "is not the id of any image")
        elif ann["category_id"] not in cat_ids:
            rep.add(key, where, "category_id", ann["category_id"], f"is not a category id (known: {sorted(cat_ids)})")
        else:
            i, img = image_by_id[ann["image_id"]]
            if ("images", i) not in rep.bad:
                _check_box(rep, key, where, ann, img)
    return data, rep


def unused_categories(data: dict[str, Any], path: str | Path) -> list[str]:
    """One warning per category that no annotation uses, e.g. the id-0 supercategory some annotation tools
    export. Not an error: the detector gets an output for it that is never positive (and COCOeval skips it)."""
    used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict)}
    return [f"{path}: category id={c['id']!r} name={c.get('name')!r} has no annotation (the model gets a class "
            "that never trains as positive; drop the category if it is not meant to be one)"
            for c in data["categories"] if isinstance(c, dict) and "id" in c and c["id"] not in used]


def load_coco_json(path: str | Path, skip_bad: bool = False) -> dict[str, Any]:
    """Read and validate the COCO json at ``path``; return its dict with boxes clipped.

    With ``skip_bad=True`` bad records are dropped instead (annotations of dropped images too) and a
    warning says how many; ``data["_skipped"]`` holds that count.

    Raises:
        DatasetError: the file is missing or not JSON, or (without ``skip_bad``) any record is malformed;
            the message names the first problem and how many more there are.
    """
    data, rep = check_coco_json(path)
    if not rep.problems:
        return data
    if not skip_bad:
        more = len(rep.problems) - 1
        tail = f" (and {more} more problem{'s' * (more > 1)}: run `minidet check-data {path}`)" if more else ""
        raise DatasetError(rep.problems[0] + tail)
    bad_images = {data["images"][i].get("id") for k, i in rep.bad if k == "images"}
    kept = {}
    for key in _REQUIRED:
        kept[key] = [r for i, r in enumerate(data[key]) if (key, i) not in rep.bad
                     and not (key == "annotations" and r.get("image_id") in bad_images)]
    skipped = sum(len(data[k]) - len(kept[k]) for k in _REQUIRED)
    warnings.warn(f"{path}: skipped {skipped} bad records ({len(rep.problems)} problems; see `minidet check-data {path}`)")
    return {**data, **kept, "_skipped": skipped}


def _check_records(rep: _Reporter, data: dict[str, Any], key: str) -> dict[int, tuple[str, dict[str, Any]]]:
    """Check that ``data[key]`` holds dicts with the required fields and unique int ids;
    return ``{index: (where, record)}`` of the records that passed."""
    ok: dict[int, tuple[str, dict[str, Any]]] = {}
    seen: dict[Any, str] = {}
    for i, rec in enumerate(data[key]):
        where = f"{key}[{i}]"
        if not isinstance(rec, dict):
            rep.add((key, i), where, "<record>", rec, "must be a JSON object")
            continue
        if "id" in rec:
            where += f" (id={rec['id']!r})"
        missing = [f for f in _REQUIRED[key] if f not in rec]
        for field in missing:
            rep.missing((key, i), where, field, sorted(rec))
        if missing:
            continue
        bad_type = [f for f in ("id", "image_id", "category_id") if f in rec and not _is_int(rec[f])]
        for field in bad_type:
            rep.add((key, i), where, field, rec[field], "must be an integer")
        if bad_type:
            continue
        if rec["id"] in seen:
            rep.add((key, i), where, "id", rec["id"], f"is a duplicate of {seen[rec['id']]}")
            continue
        seen[rec["id"]] = where
        ok[i] = (where, rec)
    return ok


def _check_box(rep: _Reporter, key: tuple[str, int], where: str, ann: dict[str, Any], img: dict[str, Any]) -> None:
    """Validate ``ann['bbox']`` ([x, y, w, h]) against ``img`` and clip a small overshoot in place."""
    box = ann["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        return rep.add(key, where, "bbox", box, "must be a list of 4 finite numbers [x, y, w, h]")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return rep.add(key, where, "bbox", box, "must have positive width and height")
    W, H = img["width"], img["height"]
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > W + t or y + h > H + t:
        return rep.add(key, where, "bbox", box, f"lies outside its {W}x{H} image by more than {t:g} px")
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return rep.add(key, where, "bbox", box, f"has no area inside its {W}x{H} image")
    ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
    if "area" not in ann:
        ann["area"] = (x1 - x0) * (y1 - y0)
    elif not _is_number(ann["area"]) or ann["area"] < 0:
        return rep.add(key, where, "area", ann["area"], "must be a non-negative number")
    if ann.setdefault("iscrowd", 0) not in (0, 1):
        return rep.add(key, where, "iscrowd", ann["iscrowd"], "must be 0 or 1")
    return None

"""``minidet predict``: a checkpoint run over image files, folders or globs.

Every readable image is written to the output folder with its detections drawn (:func:`minidet.viz.annotate.
annotate_image`), and all detections go into one ``predictions.json`` of COCO-style result records::

    {"file_name": "img/0001.jpg", "image_id": 17, "bbox": [x, y, w, h], "score": 0.91,
     "category_id": 3, "category_name": "star"}

``bbox`` is in the original image's pixels. ``image_id`` is there when a COCO annotation file says which id
each file has (``--coco``); then the list can be scored with pycocotools' ``loadRes``. An image that cannot
be read is reported by name and skipped.
"""
from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from minidet.engine.predictor import Predictor, read_image
from minidet.errors import DatasetError
from minidet.viz.annotate import annotate_image

_GLOB_CHARS = set("*?[")


def image_extensions() -> set[str]:
    """File suffixes Pillow can open (``.jpg``, ``.png``, ``.webp`` ...), lower case."""
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Image files named by ``inputs``: a file as is, a folder's image files (recursively, by suffix), a glob's
    matches. Returns ``(files in order, without repeats; messages about inputs that matched nothing)``."""
    exts, files, problems = image_extensions(), [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            if not found:
                problems.append(f"{item}: folder holds no image files ({', '.join(sorted(exts)[:6])} ...)")
        elif p.is_file():
            found = [p]
        elif _GLOB_CHARS & set(item):
            found = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not found:
                problems.append(f"{item}: pattern matches no file")
        else:
            found = []
            problems.append(f"{item}: no such file or folder")
        files += found
    return list(dict.fromkeys(files)), problems


def coco_image_ids(ann_file: str | Path) -> tuple[dict[str, int], dict[str, int]]:
    """``({file_name or its basename: image id}, {category name: id})`` of a COCO json."""
    data = json.loads(Path(ann_file).read_text())
    ids: dict[str, int] = {}
    for img in data.get("images", []):
        ids.setdefault(Path(img["file_name"]).name, img["id"])
        ids[img["file_name"]] = img["id"]
    return ids, {c["name"]: c["id"] for c in data.get("categories", [])}


def _output_name(path: Path, used: set[str]) -> str:
    suffix = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"
    name, k = path.stem + suffix, 1
    while name in used:  # same file name in two input folders
        name, k = f"{path.stem}_{k}{suffix}", k + 1
    used.add(name)
    return name


def predict_files(predictor: Predictor, files: list[Path], out_dir: str | Path, score_thresh: float = 0.3,
                  coco: str | Path | None = None, progress: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``predictor`` on each file, write the drawn images and ``predictions.json`` into ``out_dir``.

    Returns ``(result records, one message per file that could not be read or has no id in coco)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_ids, cat_by_name = coco_image_ids(coco) if coco is not None else ({}, {})
    cat_ids = [cat_by_name.get(n, c) for n, c in zip(predictor.class_names, predictor.category_ids)]
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    used: set[str] = set()
    bar = tqdm(files, desc="predict", unit="img", disable=not progress, dynamic_ncols=True)
    for path in bar:
        try:
            image = read_image(path)
        except DatasetError as exc:
            problems.append(f"skipped {exc}")
            bar.write(f"minidet predict: skipped {exc}")
            continue
        det = predictor.predict(image, score_thresh=score_thresh)
        annotate_image(image, det["boxes"], det["labels"], det["scores"], predictor.class_names).save(
            out_dir / _output_name(path, used))
        image_id = image_ids.get(str(path), image_ids.get(path.name)) if coco is not None else None
        if coco is not None and image_id is None:
            problems.append(f"{path}: no image of {coco} has this file name; its records have no image_id")
        xywh = det["boxes"].clone()
        xywh[:, 2:] -= xywh[:, :2]
        for box, score, label in zip(xywh.tolist(), det["scores"].tolist(), det["labels"].tolist()):
            rec = {"file_name": str(path), "bbox": [round(v, 2) for v in box], "score": round(score, 5),
                   "category_id": cat_ids[label], "category_name": predictor.class_names[label]}
            if image_id is not None:
                rec["image_id"] = image_id
            records.append(rec)
    (out_dir / "predictions.json").write_text(json.dumps(records, indent=1))
    return records, problems

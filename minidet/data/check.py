"""``minidet check-data``: every problem of a COCO-format dataset, json and image files, in one report."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from minidet.data.coco_validate import check_coco_json, unused_categories


def check_dataset(ann_file: str | Path, image_dir: str | Path | None = None, warnings: list[str] | None = None) -> list[str]:
    """All problems of the dataset, one message each naming the file, record, field and value.

    ``warnings``, when given, receives what is odd but trains fine: categories without annotations
    (:func:`~minidet.data.coco_validate.unused_categories`).

    Checks the json record by record (:func:`~minidet.data.coco_validate.check_coco_json`) and, with
    ``image_dir``, that every valid image record's file exists, can be decoded, and has the size the
    json gives (only the header is read, so a large dataset is checked quickly).

    Raises:
        DatasetError: when the json itself is unusable (missing, not JSON, no image list ...).
    """
    data, rep = check_coco_json(ann_file)
    problems = list(rep.problems)
    if warnings is not None:
        warnings += unused_categories(data, ann_file)
    if image_dir is None:
        return problems
    image_dir = Path(image_dir)
    for i, img in enumerate(data["images"]):
        if ("images", i) in rep.bad:
            continue
        where = f"{ann_file}: images[{i}] (id={img['id']!r})"
        path = image_dir / img["file_name"]
        try:
            with Image.open(path) as pil:
                w, h = pil.size
                pil.verify()
        except FileNotFoundError:
            problems.append(f"{where}: field 'file_name' = {img['file_name']!r}: file {path} not found")
            continue
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            problems.append(f"{where}: field 'file_name' = {img['file_name']!r}: {path} is not a readable image ({e})")
            continue
        if (w, h) != (img["width"], img["height"]):
            problems.append(f"{where}: fields 'width', 'height' = ({img['width']}, {img['height']}) but {path} is {w}x{h}")
    return problems

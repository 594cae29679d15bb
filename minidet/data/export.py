"""A shapes dataset rewritten the way annotation tools export COCO, for lesson 08 ("your own dataset").

Real exports differ from the tidy shapes data in ways that matter to a detector's input pipeline:
JPEG files of mixed sizes (landscape and portrait), category ids that are neither ``1..C`` nor contiguous,
an extra id-0 "supercategory" with no annotation, file names of their own, images without any annotation,
crowd regions (``iscrowd=1``). :func:`export_like_a_tool` produces exactly that from a generated shapes
folder, so that the lesson can show each of them without shipping a real dataset.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from minidet.errors import ConfigError

EXPORT_SIZES: tuple[tuple[int, int], ...] = ((256, 256), (320, 240), (240, 320), (300, 200), (192, 288))  # (W, H)


def export_like_a_tool(src_root: str | Path, dst_root: str | Path, category_ids: dict[str, int],
                       sizes: tuple[tuple[int, int], ...] = EXPORT_SIZES, supercategory: str | None = "shapes",
                       quality: int = 90, seed: int = 0) -> dict[str, Path]:
    """Rewrite the shapes folder ``src_root`` (see :func:`~minidet.data.generate_shapes`) under ``dst_root``.

    Every image is resized to a size ``(W, H)`` drawn from ``sizes`` and saved as ``IMG_<id>.jpg``; its boxes
    are scaled with it (``x' = x W / W_0``, ``y' = y H / H_0``) and kept as ``[x, y, w, h]``. Categories get the
    ids of ``category_ids`` (class name -> id), listed in file order after an id-0 ``supercategory`` entry
    that no annotation uses (None: no such entry). Image ids start at 1000.

    Returns ``{"train": json, "val": json, "train_images": dir, "val_images": dir, "root": dst_root}``.
    """
    src, dst = Path(src_root), Path(dst_root)
    rng = np.random.default_rng(seed)
    out: dict[str, Path] = {"root": dst}
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        data = json.loads((src / "annotations" / f"instances_{split}.json").read_text())
        names = {c["id"]: c["name"] for c in data["categories"]}
        missing = sorted(set(names.values()) - set(category_ids))
        if missing:
            raise ConfigError(f"export_like_a_tool: category_ids has no id for {missing}")
        cats: list[dict[str, Any]] = [{"id": 0, "name": supercategory, "supercategory": "none"}] if supercategory else []
        cats += [{"id": category_ids[n], "name": n, "supercategory": supercategory or n} for n in names.values()]
        (dst / split).mkdir()
        images, anns, by_image = [], [], {}
        for a in data["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        for img in data["images"]:
            w, h = sizes[int(rng.integers(len(sizes)))]
            new_id = 1000 + img["id"]
            name = f"IMG_{new_id:05d}.jpg"
            with Image.open(src / split / img["file_name"]) as pil:
                pil.convert("RGB").resize((w, h), Image.BICUBIC).save(dst / split / name, quality=quality)
            images.append({"id": new_id, "file_name": name, "width": w, "height": h})
            sx, sy = w / img["width"], h / img["height"]
            for a in by_image.get(img["id"], []):
                x, y, bw, bh = a["bbox"]
                box = [round(x * sx, 2), round(y * sy, 2), round(bw * sx, 2), round(bh * sy, 2)]
                anns.append({"id": len(anns) + 1, "image_id": new_id, "category_id": category_ids[names[a["category_id"]]],
                             "bbox": box, "area": round(box[2] * box[3], 2), "iscrowd": a["iscrowd"], "segmentation": []})
        ann_file = dst / "annotations" / f"instances_{split}.json"
        ann_file.write_text(json.dumps({"info": {"description": "exported by a (pretend) annotation tool"},
                                        "images": images, "annotations": anns, "categories": cats}))
        out[split], out[f"{split}_images"] = ann_file, dst / split
    return out

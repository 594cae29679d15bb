"""Detections drawn into an image's own pixels with Pillow: the files ``minidet predict`` writes.

Unlike :mod:`minidet.viz.boxes` (matplotlib figures for the lessons) this keeps the image at its own
resolution, so a 4000 px photo comes out as a 4000 px photo with its boxes; line width and text grow with it.
"""
from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from minidet.viz.boxes import class_color


def annotate_image(image: Image.Image, boxes: Tensor, labels: Tensor, scores: Tensor, class_names: Sequence[str]
                   ) -> Image.Image:
    """A copy of ``image`` with each box outlined in its class's palette colour and captioned ``"name 0.87"``.

    Args:
        image: the RGB image the boxes are in.
        boxes: ``(N, 4)`` xyxy in ``image``'s pixels; labels: ``(N,)`` 0-based; scores: ``(N,)``.
        class_names: name of each label.
    """
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    side = max(out.size)
    width = max(2, round(side / 250))
    font = ImageFont.load_default(size=max(10, round(side / 45)))
    for (x1, y1, x2, y2), label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
        colour = class_color(label)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        caption = f"{class_names[label]} {score:.2f}"
        tx, ty = x1, max(0.0, y1 - font.size - 2 * width)  # above the box, or inside it at the top edge
        left, top, right, bottom = draw.textbbox((tx + width, ty + width), caption, font=font)
        draw.rectangle((left - width, top - width, right + width, bottom + width), fill=colour)
        draw.text((tx + width, ty + width), caption, fill="black", font=font)
    return out

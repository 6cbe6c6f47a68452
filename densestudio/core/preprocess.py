"""The one definition of how an image becomes model input: used by training, evaluation,
heatmaps, prediction and the exported model file alike.

``Preprocessing`` is a frozen value stored with every run (model metadata in the checkpoint)
and in every exported file, so all of them resize the same way. It needs only Pillow and
numpy (no torch, no database), so the line's runtime can import it too.

Fits:

- ``letterbox`` (default since 0.2): keep the aspect ratio; scale the image to fit inside
  the ``width`` x ``height`` canvas and pad the rest with ``pad_value``, centred. A thin
  scratch in a 4:1 strip stays a thin scratch instead of being squashed 4x along one axis.
  The canvas itself need not be square: ``canvas_for`` picks its shape from the images'
  aspect ratios (see ml/config.py), so wide strips get a wide canvas.
- ``stretch``: squash to the canvas (every run made before letterboxing existed).

Resizing is bilinear with Pillow's antialiasing (a triangle filter widened when shrinking).
JPEGs are first decoded with Pillow's draft mode (DCT scaling by 1/2, 1/4 or 1/8) to no less
than the size needed, which a 12 MP camera frame decodes ~8x faster; other runtimes that
decode at full size and then resize get the same picture up to rounding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from densestudio.core.imaging import load_image, load_verified, to_display_mode

FITS = ("letterbox", "stretch")
MODES = ("L", "RGB")
DEFAULT_PAD = 128  # mid-grey: close to most images' mean, so padding adds no strong edge
SIZE_STEP = 16  # canvas sides are multiples of this (DenseNet halves the map 5 times)


@dataclass(frozen=True)
class Preprocessing:
    width: int
    height: int
    mode: str = "L"  # "L" (one channel) or "RGB"
    fit: str = "letterbox"  # "letterbox" | "stretch"
    pad_value: int = DEFAULT_PAD  # letterbox padding, 0-255 in every channel

    # ------------------------------------------------------------ description
    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def cache_key(self) -> str:
        """Names the decoded-pixel cache folder: images prepared differently never mix."""
        fit = "lb" if self.fit == "letterbox" else "st"
        return (
            f"{self.mode}-{self.width}x{self.height}-{fit}{self.pad_value if fit == 'lb' else ''}"
        )

    def describe(self) -> str:
        """For people (Train tab, export summary, report)."""
        how = ("keeping the aspect ratio (padded)" if self.fit == "letterbox"
               else "stretched to fit")  # fmt: skip
        colour = "grayscale" if self.mode == "L" else "colour"
        return f"{self.width} x {self.height} px {colour}, {how}"

    def problems(self) -> list[str]:
        p = []
        if self.fit not in FITS:
            p.append(f"Unknown fit '{self.fit}' (choose from {', '.join(FITS)}).")
        if self.mode not in MODES:
            p.append(f"Unknown input mode '{self.mode}' (choose from {', '.join(MODES)}).")
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            p.append(f"Input size {self.width} x {self.height} is outside 16-4096 px.")
        if not 0 <= self.pad_value <= 255:
            p.append("Padding value must be 0-255.")
        return p

    # ------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """From stored metadata; raises ValueError for anything malformed (a crafted file)."""
        try:
            prep = cls(
                width=int(data["width"]), height=int(data["height"]), mode=str(data["mode"]),
                fit=str(data.get("fit", "letterbox")),
                pad_value=int(data.get("pad_value", DEFAULT_PAD)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed preprocessing definition: {exc}") from exc
        problems = prep.problems()
        if problems:
            raise ValueError(" ".join(problems))
        return prep

    # ------------------------------------------------------------ geometry
    def content_box(self, src_width: int, src_height: int) -> tuple[int, int, int, int]:
        """Where the image lands on the canvas: (left, top, width, height) in canvas px."""
        if self.fit == "stretch":
            return 0, 0, self.width, self.height
        scale = min(self.width / src_width, self.height / src_height)
        w = min(self.width, max(1, round(src_width * scale)))
        h = min(self.height, max(1, round(src_height * scale)))
        return (self.width - w) // 2, (self.height - h) // 2, w, h

    # ------------------------------------------------------------ pixels
    def apply(self, img: Image.Image) -> np.ndarray:
        """C x height x width uint8 pixels of an already decoded image."""
        img = to_display_mode(img)
        if img.mode != self.mode:
            img = img.convert(self.mode)
        left, top, w, h = self.content_box(img.width, img.height)
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        if (w, h) != (self.width, self.height):
            fill = self.pad_value if self.mode == "L" else (self.pad_value,) * 3
            canvas = Image.new(self.mode, (self.width, self.height), fill)
            canvas.paste(img, (left, top))
            img = canvas
        arr = np.asarray(img, dtype=np.uint8)
        return arr[None].copy() if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))

    def load(self, source: str | Path | Image.Image, content_hash: str | None = None
             ) -> np.ndarray:
        """Pixels of an image file (or PIL image) exactly as training saw them; with
        ``content_hash``, only if the file still holds that content (else FileChanged)."""
        if isinstance(source, Image.Image):
            return self.apply(source)
        # Draft to at least the canvas's long side: enough in both axes whatever the
        # aspect ratio or EXIF rotation, so draft never costs detail.
        side = max(self.width, self.height)
        if content_hash is not None:
            return self.apply(load_verified(Path(source), content_hash, max_side=side))
        return self.apply(load_image(Path(source), max_side=side))


def legacy(size: int, mode: str) -> Preprocessing:
    """The preprocessing of runs made before it was stored: a square ``size``, stretched."""
    return Preprocessing(width=int(size), height=int(size), mode=mode, fit="stretch")


def from_meta(meta: dict[str, Any]) -> Preprocessing:
    """The preprocessing of a run's model metadata (old runs: square and stretched)."""
    stored = meta.get("preprocessing")
    if stored:
        return Preprocessing.from_dict(stored)
    return legacy(int(meta["img_size"]), str(meta["mode"]))


# ------------------------------------------------------------------ choosing a canvas
def _snap(value: float) -> int:
    return max(SIZE_STEP, math.floor(value / SIZE_STEP + 0.5) * SIZE_STEP)


def canvas_for(size: int, aspect: float) -> tuple[int, int]:
    """Canvas (width, height) for base ``size`` and width:height ``aspect``.

    The canvas keeps about size x size pixels (the cost of a step) while its short side
    stays at least size / 2: a 16:1 strip at size 128 gets 1024 x 64 rather than 512 x 32,
    where a 2-px-wide defect would shrink below a pixel. Square when aspect is ~1.
    """
    aspect = min(16.0, max(1 / 16, float(aspect)))
    if abs(math.log(aspect)) < math.log(1.25):
        return _snap(size), _snap(size)
    long_ratio = aspect if aspect >= 1 else 1 / aspect
    short = max(size / 2, size / math.sqrt(long_ratio))
    long = short * long_ratio
    w, h = (long, short) if aspect >= 1 else (short, long)
    return _snap(w), _snap(h)


def _weighted_median(values: list[tuple[float, int]]) -> float | None:
    values = sorted((v, n) for v, n in values if n > 0)
    total = sum(n for _, n in values)
    if not total:
        return None
    seen = 0
    for value, n in values:
        seen += n
        if 2 * seen >= total:
            return value
    return values[-1][0]


def typical_aspect(sizes: list[tuple[int, int, int]]) -> float:
    """The median width:height ratio of (width, height, count) rows (1.0 for none): the
    canvas shape that wastes least padding on most images."""
    median = _weighted_median([(w / h, n) for w, h, n in sizes if w > 0 and h > 0])
    return 1.0 if median is None else median


def typical_side(sizes: list[tuple[int, int, int]]) -> int:
    """The median geometric side sqrt(w * h) of (width, height, count) rows: how many
    pixels the images really have, so the input size never blows small images up."""
    median = _weighted_median([(math.sqrt(w * h), n) for w, h, n in sizes if w > 0 and h > 0])
    return 0 if median is None else int(median)


def typical_short_side(sizes: list[tuple[int, int, int]]) -> int:
    """The median short side of (width, height, count) rows."""
    median = _weighted_median([(float(min(w, h)), n) for w, h, n in sizes if w > 0 and h > 0])
    return 0 if median is None else int(median)

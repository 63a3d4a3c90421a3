"""What the built-in image reader sees in an image: its text (OCR), size and main colours.

The OCR is PP-OCRv4 (text detection, orientation and recognition, ONNX) from the
`rapidocr-onnxruntime` package, run on onnxruntime. It reads printed text in English and Chinese
well, handwriting poorly. Nothing here recognises objects, people or scenes: no such model ships
its weights in a package we could find, and the reader says so rather than guess.

The three ONNX files are checked against pinned SHA-256 digests before they are loaded.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from apps.providers.vision.fetch import ImageError
from apps.providers.vision.reading import ImageReading

__all__ = ["ImageReading", "is_reader_installed", "read_image"]

MAX_PIXELS = 40_000_000
_OCR_SIDE = {"low": 768, "auto": 1600, "high": 2400}
_MIN_TEXT_SCORE = 0.6
_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "GIF": "GIF", "WEBP": "WEBP", "MPO": "JPEG"}
_OCR_PACKAGE = "rapidocr_onnxruntime"
_OCR_MODELS = {
    "det_model_path": (
        "models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    ),
    "cls_model_path": (
        "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    ),
    "rec_model_path": (
        "models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    ),
}
# Colour names and the sRGB value each stands for; a pixel takes the nearest one's name.
_PALETTE = {
    "black": (0, 0, 0), "dark grey": (64, 64, 64), "grey": (128, 128, 128),
    "light grey": (192, 192, 192), "white": (255, 255, 255), "red": (220, 30, 30),
    "dark red": (128, 0, 0), "orange": (255, 140, 0), "yellow": (250, 220, 40),
    "brown": (130, 80, 30), "green": (40, 170, 60), "dark green": (0, 90, 30),
    "blue": (30, 80, 220), "navy": (0, 0, 110), "light blue": (140, 190, 240),
    "cyan": (0, 200, 210), "purple": (130, 40, 160), "pink": (250, 150, 190),
    "beige": (230, 215, 180),
}  # fmt: skip


def is_reader_installed() -> bool:
    return importlib.util.find_spec(_OCR_PACKAGE) is not None


def read_image(data: bytes, *, detail: str = "auto") -> ImageReading:
    """Decode, measure and OCR an image (CPU-bound: call it from a worker thread)."""
    image, image_format = _decoded(data)
    colours = _main_colours(image)
    text_lines = _ocr_lines(image, max_side=_OCR_SIDE.get(detail, _OCR_SIDE["auto"]))
    return ImageReading(image_format, image.width, image.height, colours, text_lines)


def _decoded(data: bytes) -> tuple[Image.Image, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            image_format = _FORMATS.get(image.format or "")
            if image_format is None:
                raise ImageError("The image is not a PNG, JPEG, GIF or WEBP file.")
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(
                    f"The image has {image.width}x{image.height} pixels; the limit is "
                    f"{MAX_PIXELS} pixels."
                )
            image.seek(0)  # the first frame of an animation
            return image.convert("RGB"), image_format
        except (OSError, ValueError, Image.DecompressionBombWarning, EOFError):
            raise ImageError("The image could not be decoded.") from None


def _main_colours(image: Image.Image, limit: int = 4) -> tuple[tuple[str, int], ...]:
    pixels = np.asarray(image.resize((64, 64)), dtype=np.int32).reshape(-1, 3)
    palette = np.array(list(_PALETTE.values()), dtype=np.int32)
    nearest = ((pixels[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    counts = np.bincount(nearest, minlength=len(palette))
    names = list(_PALETTE)
    ranked = sorted(range(len(names)), key=lambda i: -counts[i])
    shares = [(names[i], round(100 * int(counts[i]) / len(pixels))) for i in ranked[:limit]]
    return tuple((name, share) for name, share in shares if share >= 3)


def _ocr_lines(image: Image.Image, *, max_side: int) -> tuple[str, ...]:
    scale = min(1.0, max_side / max(image.width, image.height))
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)))
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    with _OCR_LOCK:
        found, _ = _ocr_engine()(bgr)
    rows = [(box, text) for box, text, score in found or [] if score >= _MIN_TEXT_SCORE]
    return _lines(rows)


def _lines(rows: list[tuple[Any, str]]) -> tuple[str, ...]:
    """Text boxes grouped into lines (boxes whose vertical centres are close), top to bottom."""
    placed = sorted(
        ((sum(p[1] for p in box) / 4, min(p[0] for p in box), box, text) for box, text in rows),
        key=lambda item: (item[0], item[1]),
    )
    lines: list[list[tuple[float, float, str]]] = []
    for centre, left, box, text in placed:
        height = max(p[1] for p in box) - min(p[1] for p in box)
        if lines and abs(lines[-1][0][0] - centre) < height / 2:
            lines[-1].append((centre, left, text))
        else:
            lines.append([(centre, left, text)])
    return tuple(" ".join(text for _, _, text in sorted(line, key=_left)) for line in lines)


def _left(item: tuple[float, float, str]) -> float:
    return item[1]


_OCR_LOCK = threading.Lock()


@functools.cache
def _ocr_engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR

    from apps.providers.local.weights import sha256_file

    spec = importlib.util.find_spec(_OCR_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError("rapidocr-onnxruntime is not installed")
    root = Path(spec.origin).parent
    paths = {}
    for option, (relative, pinned) in _OCR_MODELS.items():
        path = root / relative
        actual = sha256_file(path)
        if actual != pinned:
            raise RuntimeError(f"Refusing to load {path}: SHA-256 {actual}, pinned {pinned}")
        paths[option] = str(path)
    return RapidOCR(**paths)

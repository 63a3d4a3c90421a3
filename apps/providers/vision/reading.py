"""What the image reader saw in an image, as plain data: light enough for any process to import.

The reader itself (OCR on onnxruntime) runs in the engine process; web processes only get
these readings back and describe them to the chat model.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ImageReading"]


@dataclass(frozen=True)
class ImageReading:
    format: str
    width: int
    height: int
    colours: tuple[tuple[str, int], ...]  # (name, percent of the image), largest first
    text_lines: tuple[str, ...]

    def describe(self, number: int) -> str:
        """The reading as text for a chat model."""
        colours = ", ".join(f"{name} ({share}%)" for name, share in self.colours)
        lines = [
            f"[Image {number}: {self.format}, {self.width}x{self.height} pixels. "
            f"Main colours: {colours}."
        ]
        if self.text_lines:
            lines.append("Text in the image (OCR), top to bottom:")
            lines.extend(self.text_lines)
        else:
            lines.append("No text was found in the image.")
        lines.append("(Only the text, size and colours of the image are known.)]")
        return "\n".join(lines)

"""The image reader: real OCR (PP-OCRv4 on onnxruntime), size and colours, honest about limits."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from apps.providers.vision import ImageError, read_image


def invoice_png(image_format: str = "PNG") -> bytes:
    image = Image.new("RGB", (520, 200), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=36)
    draw.text((20, 20), "INVOICE 2024-117", fill="black", font=font)
    draw.text((20, 110), "Total: $42.50", fill=(200, 0, 0), font=font)
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def test_ocr_reads_the_text_in_order():
    reading = read_image(invoice_png())
    assert reading.format == "PNG" and (reading.width, reading.height) == (520, 200)
    assert len(reading.text_lines) == 2
    assert "INVOICE" in reading.text_lines[0] and "2024-117" in reading.text_lines[0]
    assert reading.text_lines[1].replace(" ", "") == "Total:$42.50"  # OCR may drop a space
    assert reading.colours[0][0] == "white"


def test_the_description_says_what_the_reader_cannot_see():
    text = read_image(invoice_png("JPEG"), detail="low").describe(2)
    assert text.startswith("[Image 2: JPEG, 520x200 pixels.")
    assert "42.50" in text
    assert "Only the text, size and colours" in text


def test_an_image_without_text():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 80, 220)).save(buffer, "WEBP")
    reading = read_image(buffer.getvalue())
    assert reading.text_lines == ()
    assert reading.colours == (("blue", 100),)
    assert "No text was found" in reading.describe(1)


@pytest.mark.parametrize("data", [b"not an image", b"\x89PNG\r\n\x1a\n broken"])
def test_undecodable_images_are_refused(data):
    with pytest.raises(ImageError, match=r"could not be decoded|not a PNG"):
        read_image(data)


def test_images_with_too_many_pixels_are_refused():
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, "PNG")  # small file, 81 megapixels
    with pytest.raises(ImageError, match="limit is 40000000 pixels"):
        read_image(buffer.getvalue())


def test_other_formats_are_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "BMP")
    with pytest.raises(ImageError, match="not a PNG, JPEG, GIF or WEBP"):
        read_image(buffer.getvalue())

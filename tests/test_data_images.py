"""Every unusable image is found and named; a GIF or PNG under a .jpg name is converted, not dropped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from llava_gemma.data.images import ImageCheck, check_image
from PIL import Image, ImageDraw


def photo(size=(96, 64)) -> Image.Image:
    img = Image.new("RGB", size, (40, 90, 160))
    ImageDraw.Draw(img).ellipse((10, 10, 60, 50), fill=(220, 30, 30))
    for x in range(0, size[0], 3):  # some texture, so the JPEG has real entropy-coded data
        ImageDraw.Draw(img).line((x, 0, x, size[1]), fill=(x * 2 % 255, 100, 50))
    return img


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def images(tmp_path) -> Path:
    jpeg = encoded(photo(), "JPEG")
    files = {
        "good.jpg": jpeg,
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "empty.jpg": b"",
        "text.jpg": b"<html>404 Not Found</html>",
        "corrupt.jpg": jpeg[:300] + b"\xff" * 400 + jpeg[700:],
        "gif.jpg": encoded(photo().convert("P"), "GIF"),
        "png.jpg": encoded(photo(), "PNG"),
        "good.png": encoded(photo(), "PNG"),
        "truncated.png": encoded(photo(), "PNG")[:200],
        "placeholder.jpg": encoded(Image.new("P", (1, 1)), "GIF"),  # what a dead cover URL answers
        "icon.jpg": encoded(photo((15, 40)), "JPEG"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "folder.jpg").mkdir()
    return tmp_path


@pytest.mark.parametrize("name, problem", [
    ("good.jpg", None), ("good.png", None),
    ("missing.jpg", "image_missing"), ("empty.jpg", "image_empty"), ("text.jpg", "image_unreadable"),
    ("folder.jpg", "image_unreadable"), ("truncated.jpg", "image_truncated"),
    ("truncated.png", "image_truncated"), ("corrupt.jpg", "image_undecodable"),
    ("placeholder.jpg", "image_too_small"), ("icon.jpg", "image_too_small"),
])
def test_unusable_images_are_named(images, name, problem):
    assert check_image(images / name, images / "converted" / name) == ImageCheck(problem)


def test_a_header_check_misses_truncation_but_is_cheap(images):
    assert check_image(images / "truncated.jpg", decode=False) == ImageCheck()
    assert check_image(images / "empty.jpg", decode=False) == ImageCheck("image_empty")


@pytest.mark.parametrize("name, fmt", [("gif.jpg", "GIF"), ("png.jpg", "PNG")])
def test_other_formats_under_a_jpg_name_are_converted(images, name, fmt):
    original = (images / name).read_bytes()
    target = images / "converted" / "sub" / name
    assert check_image(images / name, target) == ImageCheck(converted=True)
    with Image.open(target) as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (96, 64)
    assert (images / name).read_bytes() == original  # the raw download is left as it was
    assert not list(target.parent.glob("*.part"))
    # Without somewhere to put the copy, the mismatch is reported instead of silently passed.
    assert check_image(images / name, None) == ImageCheck("image_format_mismatch")


def test_a_decompression_bomb_is_refused(images, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses images over twice this
    assert check_image(images / "good.jpg") == ImageCheck("image_too_large")

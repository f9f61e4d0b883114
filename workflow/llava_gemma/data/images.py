"""Is an image usable for training? Checked once per distinct file, repaired where it can be.

Reasons (keys of the filter report): ``image_missing``, ``image_empty`` (zero bytes or zero
pixels), ``image_unreadable`` (not an image, or cannot be opened), ``image_truncated`` and
``image_undecodable`` (the pixel data is cut short or corrupt; found by decoding, which a header
check misses), ``image_too_large`` (PIL's decompression-bomb limit), ``image_too_small`` (a side under
``MIN_SIDE`` pixels: the 1 x 1 placeholder a dead image host answers with decodes fine, and would be trained on).

GIF or PNG content under a ``.jpg`` name (OCR-VQA's covers are full of them) is not dropped: its
first frame is written as an RGB JPEG under the dataset's ``converted/`` folder, which the loader
reads instead, and the record is counted as ``image_converted``. The raw download stays untouched.
Verdicts are remembered by (size, mtime) between runs, so a rerun opens only new or changed files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

JPEG_SUFFIXES = {".jpg", ".jpeg"}
CONVERTED_QUALITY = 95
# Smallest side kept: every source's real images are hundreds of pixels a side (the toy world's 64), so this drops
# only placeholders and icons, which the tower would see as a blur at 224 or 336 pixels.
MIN_SIDE = 16
KNOWN_VERSION = 2  # 2: verdicts include image_too_small (a version-1 cache is checked afresh)


@dataclass(frozen=True)
class ImageCheck:
    problem: str | None = None
    converted: bool = False


def check_image(path: Path, converted_path: Path | None = None, *, decode: bool = True) -> ImageCheck:
    """Why ``path`` cannot be used (``problem``), or whether it was converted into ``converted_path``.

    ``decode`` decodes the pixels (JPEGs at 1/8 scale: a fraction of the cost, and still every
    byte of the entropy-coded data is read, so a truncated file shows); without it only the
    header is parsed.
    """
    try:
        if path.stat().st_size == 0:
            return ImageCheck("image_empty")
        handle = path.open("rb")
    except FileNotFoundError:
        return ImageCheck("image_missing")
    except OSError:  # a folder, no permission, an I/O error
        return ImageCheck("image_unreadable")
    try:
        with handle, Image.open(handle) as img:
            if img.width == 0 or img.height == 0:
                return ImageCheck("image_empty")
            if min(img.width, img.height) < MIN_SIDE:
                return ImageCheck("image_too_small")
            misnamed = path.suffix.lower() in JPEG_SUFFIXES and img.format != "JPEG"
            if img.format == "JPEG" and decode:
                img.draft("RGB", (1, 1))  # the smallest scale libjpeg offers (1/8)
            if decode or misnamed:
                img.load()
            if misnamed and converted_path is not None:
                _write_jpeg(img, converted_path)
                return ImageCheck(converted=True)
            if misnamed:
                return ImageCheck("image_format_mismatch")
    except UnidentifiedImageError:
        return ImageCheck("image_unreadable")
    except Image.DecompressionBombError:
        return ImageCheck("image_too_large")
    except OSError as err:
        return ImageCheck("image_truncated" if "truncated" in str(err) else "image_undecodable")
    except Exception:  # decoders raise many types (ValueError, SyntaxError, ...); all mean unusable
        return ImageCheck("image_undecodable")
    return ImageCheck()


# A verdict remembered between runs: [size, mtime_ns, decoded, problem, converted].
Known = dict[str, list]


def check_images(paths: list[str], image_root: Path, converted_root: Path | None, *, decode: bool = True,
                 known: Known | None = None) -> list[tuple[ImageCheck, list | None, bool]]:
    """``check_image`` over record image paths (relative to ``image_root``); a task for a worker.

    Each verdict comes with what to remember of it (None for a missing file) and whether it was
    remembered rather than checked. A file whose size
    and mtime match a ``known`` verdict of at least this thoroughness is not opened again: on
    the real mix, decoding ~380k distinct images is the costliest part of a rerun.
    """
    out = []
    for p in paths:
        path = image_root / p
        target = converted_root / p if converted_root else None
        try:
            st = path.stat()
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            out.append((check_image(path, target, decode=decode), None, False))
            continue
        entry = (known or {}).get(p)
        if (entry and entry[:2] == stamp and (entry[2] or not decode)
                and (not entry[4] or (target is not None and target.exists()))):
            out.append((ImageCheck(entry[3], entry[4]), entry, True))
            continue
        verdict = check_image(path, target, decode=decode)
        out.append((verdict, [*stamp, decode, verdict.problem, verdict.converted], False))
    return out


def load_known(path: Path) -> Known:
    """Verdicts saved by an earlier run (an unreadable file just means starting afresh)."""
    try:
        saved = json.loads(path.read_text())
        known = saved["images"] if saved.get("version") == KNOWN_VERSION else {}
        return known if isinstance(known, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def save_known(path: Path, known: Known) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps({"version": KNOWN_VERSION, "images": known}))
    os.replace(tmp, path)


def _write_jpeg(img: Image.Image, dest: Path) -> None:
    img.seek(0)  # an animated GIF's first frame
    rgb = img.convert("RGB")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".{os.getpid()}.part")
    rgb.save(tmp, "JPEG", quality=CONVERTED_QUALITY)
    os.replace(tmp, dest)  # never a half-written file under the final name

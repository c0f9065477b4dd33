"""Test media made on the spot: espeak-ng speech, pictures with shapes and text, and the measures
the audio and image tests judge them by (word error rate, edge sharpness, SSIM)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np


def espeak(text: str, path: Path, *, voice: str = "en-us") -> Path:
    """Speech synthesised by espeak-ng (a Debian package; .ci/run installs it)."""
    binary = shutil.which("espeak-ng")
    assert binary, "espeak-ng is not installed (apt-get install espeak-ng)"
    subprocess.run([binary, "-v", voice, "-s", "150", "-w", str(path), text], check=True)
    return path


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance over words."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / max(1, len(ref))


def drawing(side: int = 256):
    """Shapes with hard edges and a line of text: what an upscaler should keep sharp."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), (240, 240, 235))
    draw = ImageDraw.Draw(image)
    s = side / 256
    draw.rectangle([20 * s, 20 * s, 120 * s, 110 * s], fill=(200, 30, 30))
    draw.ellipse([110 * s, 60 * s, 230 * s, 180 * s], fill=(30, 60, 200))
    draw.polygon([(30 * s, 230 * s), (100 * s, 140 * s), (160 * s, 235 * s)], fill=(20, 150, 40))
    draw.line([(0, 128 * s), (side, 200 * s)], fill=(10, 10, 10), width=max(1, int(6 * s)))
    draw.text((130 * s, 200 * s), "ggstack", fill=(0, 0, 0), font_size=int(28 * s))
    return image


def png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def gray(image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def mean_gradient(image) -> float:
    """Mean gradient magnitude: blur lowers it, so a resize scores below a good upscaler."""
    gy, gx = np.gradient(gray(image))
    return float(np.hypot(gx, gy).mean())


def ssim(a, b, *, window: int = 7) -> float:
    """Mean structural similarity of two same-size images (grey, uniform window, Wang et al. constants)."""
    from numpy.lib.stride_tricks import sliding_window_view

    x, y = gray(a), gray(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def mean(img: np.ndarray) -> np.ndarray:
        return sliding_window_view(img, (window, window)).mean(axis=(-1, -2))

    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx ** 2, mean(y * y) - my ** 2, mean(x * y) - mx * my
    value = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(value.mean())

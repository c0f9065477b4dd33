"""Images: Dell's image variations, which are Real-ESRGAN ×4 upscales (ggstack.images)."""

from __future__ import annotations

import base64
import time

import anyio.to_thread
from starlette.datastructures import UploadFile

from generated.models.dell_pro_ai_studio import CreateImageVariationRequest, Image, ImagesResponse
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest
from ggstack.images.esrgan import SCALE, encode_png, read_square_image

#: Dell's only image model; any registered `image` model can be named instead.
DEFAULT_MODEL = "realesrgan"


async def dell_create_image_variation(body: CreateImageVariationRequest, uploads: dict[str, UploadFile],
                                      ctx: Context) -> ImagesResponse:
    model = ctx.models.get(body.model or DEFAULT_MODEL).identifier
    data = await image_bytes(ctx, uploads.get("image"))
    image = await anyio.to_thread.run_sync(lambda: read_square_image(data, max_side=ctx.settings.image_max_side))
    expected = f"{image.width * SCALE}x{image.height * SCALE}"
    if body.size and body.size != expected:
        raise InvalidRequest(f"size must be {expected}: Real-ESRGAN x4 gives 4x the {image.width}x{image.height} "
                             "input", param="size")
    engine = await ctx.models.upscaler(model)
    upscaled = await engine.upscale(image)
    png = await anyio.to_thread.run_sync(encode_png, upscaled)
    encoded = base64.b64encode(png).decode("ascii")
    # The network is deterministic: n asks for n copies of the one result.
    return ImagesResponse(created=int(time.time()), data=[Image(b64_json=encoded) for _ in range(body.n or 1)])


async def image_bytes(ctx: Context, upload: UploadFile | None) -> bytes:
    if upload is None:
        raise InvalidRequest("'image' must be an uploaded image file", param="image")
    limit = ctx.settings.image_max_bytes
    if upload.size is not None and upload.size >= limit:
        # Dell's document answers every bad image with 400, an oversized one included
        raise InvalidRequest(f"the image is {upload.size} bytes; it must be under {limit} (image_max_bytes)",
                              param="image")
    data = await upload.read()
    if not data:
        raise InvalidRequest("the image file is empty", param="image")
    return data

"""The API documents: /openapi.json|yaml (all specs merged) and /docs (Swagger UI, served locally)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import anyio.to_thread
import swagger_ui_bundle
import yaml
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ggstack.http.errors import NotFound
from ggstack.http.render import error_response

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ggstack API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      urls: %(urls)s,
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
    });
  </script>
</body>
</html>
"""


@cache
def spec_document(name: str) -> dict[str, Any]:
    """An overlaid spec as codegen wrote it (generated/openapi/<name>.json)."""
    text = resources.files("generated").joinpath("openapi", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def spec_names() -> list[str]:
    folder = resources.files("generated").joinpath("openapi")
    return sorted(Path(str(p)).stem for p in folder.iterdir() if str(p).endswith(".json"))


class DocumentError(ValueError):
    """`read_document` was given neither a served document's name nor a readable OpenAPI file."""


def read_document(ref: str) -> tuple[str, dict[str, Any]]:
    """`(name, document)` for a document ggstack serves (by name, overlaid) or a JSON/YAML file.

    The command-line tools (`contract`, `spec diff`) take either, so a vendor's own file and
    ours are read the same way.
    """
    names = [n for n in spec_names() if n != "merged"]
    if ref in names:
        return ref, spec_document(ref)
    path = Path(ref)
    if not path.is_file():
        raise DocumentError(f"{ref!r} is neither a file nor one of {', '.join(names)}")
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DocumentError(f"{ref}: not JSON or YAML ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise DocumentError(f"{ref}: not an OpenAPI document (no paths)")
    return path.name, document


async def openapi_json(request: Request) -> Response:
    return JSONResponse(spec_document("merged"))


@cache
def merged_yaml() -> str:
    """Dumped once: the merged document is about 650 kB, which the dumper takes seconds over."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(spec_document("merged"), Dumper=dumper, sort_keys=False, allow_unicode=True)


async def openapi_yaml(request: Request) -> Response:
    return Response(await anyio.to_thread.run_sync(merged_yaml), media_type="application/yaml")


async def one_spec(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in spec_names():
        return error_response(NotFound(f"No spec named {name}; there are {', '.join(spec_names())}"), "llama_stack")
    return JSONResponse(spec_document(name))


async def docs_page(request: Request) -> Response:
    urls = [{"url": "/openapi.json", "name": "ggstack (all APIs)"}]
    urls += [{"url": f"/openapi/{name}.json", "name": name} for name in spec_names() if name != "merged"]
    return HTMLResponse(DOCS_PAGE % {"urls": json.dumps(urls)})


def docs_routes() -> list[BaseRoute]:
    return [
        Route("/openapi.json", openapi_json, methods=["GET"], name="openapi_json"),
        Route("/openapi.yaml", openapi_yaml, methods=["GET"], name="openapi_yaml"),
        Route("/openapi/{name}.json", one_spec, methods=["GET"], name="openapi_spec"),
        Route("/docs", docs_page, methods=["GET"], name="docs"),
        Mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs_assets"),
    ]

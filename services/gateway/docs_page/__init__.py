"""The OpenAPI page (/docs) with no outside network: Swagger UI's files come from the gateway
itself (the files the PyPI package `fastapi-offline` ships: Swagger UI 5, which reads the OpenAPI
3.1 FastAPI writes), under the same strict policy as the console (no inline script: the page's
own start-up is docs.js beside this file)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from services.gateway.console import HEADERS

HERE = Path(__file__).resolve().parent
# Only what the page loads (Swagger UI's bundle, its stylesheet, its icon), by name.
SWAGGER_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
                  "favicon.png": "image/png"}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" href="/docs/assets/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/docs.js"></script>
</body>
</html>
"""


def _swagger_dir() -> Path:
    import fastapi_offline  # imported when first served: nothing read at import time
    return Path(fastapi_offline.__file__).resolve().parent / "static"


def router(title: str) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    page = PAGE.format(title=title.replace("<", "&lt;"))

    @routes.get("/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=HEADERS)

    @routes.get("/docs/docs.js")
    async def start() -> FileResponse:
        return FileResponse(HERE / "docs.js", media_type="text/javascript; charset=utf-8", headers=HEADERS)

    @routes.get("/docs/assets/{asset}")
    async def asset(asset: str) -> FileResponse:
        if asset not in SWAGGER_ASSETS:
            raise HTTPException(404)
        return FileResponse(_swagger_dir() / asset, media_type=SWAGGER_ASSETS[asset], headers=HEADERS)

    return routes

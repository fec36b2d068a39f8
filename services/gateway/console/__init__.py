"""The service-window console (经办窗口): static files the gateway serves at /console. The page
is plain HTML, one ES module and its texts, and a stylesheet; it talks only to /v1 with the
clerk's bearer token, so serving it needs no token (it holds nothing about anyone)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, JSONResponse

from shared import limits, refusals

HERE = Path(__file__).resolve().parent
ASSETS = {"console.js": "text/javascript; charset=utf-8", "texts.js": "text/javascript; charset=utf-8",
          "console.css": "text/css; charset=utf-8"}
# No inline script or style anywhere in the page, so the policy can be strict: only this
# origin's files, fetches only to this origin, never framed.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def router() -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    @routes.get("/console")
    async def page() -> FileResponse:
        return FileResponse(HERE / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)

    @routes.get("/console/catalogue.json")
    async def catalogue() -> JSONResponse:
        """The rules and words the console shows, from the shared kernel (never copied into texts.js)."""
        return JSONResponse(catalogue_body(), headers=HEADERS)

    @routes.get("/console/{asset}")
    async def asset(asset: str) -> FileResponse:
        if asset not in ASSETS:
            raise HTTPException(404)
        return FileResponse(HERE / asset, media_type=ASSETS[asset], headers=HEADERS)

    return routes


def catalogue_body() -> dict:
    """A monthly limit's bounds and every refusal's words (code -> {zh, en}), as one JSON document."""
    return {"monthly_limit": limits.catalogue(), "refusals": refusals.catalogue()}

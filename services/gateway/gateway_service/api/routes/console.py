"""GET /console (the page) and /console/static/<file>; off with GATEWAY_CONSOLE_ENABLED=false.

No API key is needed to load the page: it holds no data, and everything it shows comes from the
API with the key the user types in."""

from functools import cache

from fastapi import APIRouter
from starlette.responses import RedirectResponse, Response

from ...console.assets import SECURITY_HEADERS, ConsoleAssets, load_assets
from ..deps import SettingsDep
from ..errors import ApiError

router = APIRouter(include_in_schema=False)


@cache
def _assets(trace_url: str) -> ConsoleAssets:
    return load_assets(trace_url)


@router.get("/console", response_class=Response)
async def console_page(settings: SettingsDep) -> Response:
    page = _assets(settings.gateway_console_trace_url).page
    return Response(page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/console/")
async def console_slash() -> Response:
    return RedirectResponse("/console", status_code=308, headers=SECURITY_HEADERS)


@router.get("/console/static/{name}", response_class=Response)
async def console_static(name: str, settings: SettingsDep) -> Response:
    found = _assets(settings.gateway_console_trace_url).static.get(name)
    if found is None:
        raise ApiError(404, "no such console file", code="not_found")
    body, media_type = found
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)

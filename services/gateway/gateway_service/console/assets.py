"""The console's files, read once at start, and the headers every console response carries."""

import html
from dataclasses import dataclass
from importlib.resources import files

# Scripts and styles only from the gateway itself, API calls only to it, never inside a frame,
# no inline script (every value is rendered as text, so markup in a model answer stays inert).
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Pages and scripts are tiny; keeping no copy anywhere means a signed-out browser shows nothing.
SECURITY_HEADERS = {
    "content-security-policy": CONSOLE_CSP,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
TRACE_URL_PLACEHOLDER = "{{trace_url}}"


@dataclass(frozen=True)
class ConsoleAssets:
    page: bytes
    static: dict[str, tuple[bytes, str]]


def load_assets(trace_url: str) -> ConsoleAssets:
    """The page with the trace UI's address filled in (escaped: it is an attribute value), and the
    static files by name with their media types."""
    root = files(__package__) / "static"
    page = (root / "index.html").read_text(encoding="utf-8")
    page = page.replace(TRACE_URL_PLACEHOLDER, html.escape(trace_url, quote=True))
    static = {
        name: ((root / name).read_bytes(), media)
        for name, media in (("app.js", MEDIA_TYPES[".js"]), ("console.css", MEDIA_TYPES[".css"]))
    }
    return ConsoleAssets(page.encode(), static)

"""Where the routing table comes from, and reloading it when its file changes.

With GENERATION_ROUTING_FILE set, the table is read from that YAML/JSON file and
re-read whenever the file changes (a Kubernetes ConfigMap update swaps the file);
a file that fails to load or validate is logged and the table in force stays.
Without it, the table is built from GENERATION_MODELS and the single upstream
settings, as before routing files existed.
"""

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from .routing import MissingApiKey, RoutingTable
from .routing_config import DeploymentConfig, ModelConfig, RoutingConfig, Timeouts
from .settings import GenerationSettings

log = logging.getLogger(__name__)

MAX_ROUTING_FILE_BYTES = 1024 * 1024
LEGACY_API_KEY_ENV = "GENERATION_UPSTREAM_API_KEY"


class RoutingError(ValueError):
    """The routing file could not be read or is not a valid table."""


def legacy_config(settings: GenerationSettings) -> tuple[RoutingConfig, dict[str, str]]:
    """One deployment per GENERATION_MODELS entry, all on GENERATION_UPSTREAM_BASE_URL."""
    timeouts = Timeouts(
        connect=settings.generation_connect_timeout_seconds,
        read=settings.generation_read_timeout_seconds,
        total=settings.generation_total_timeout_seconds,
    )
    key = settings.generation_upstream_api_key.get_secret_value()
    models = {
        name: ModelConfig(
            deployments=[
                DeploymentConfig(
                    name=name,
                    base_url=settings.generation_upstream_base_url,
                    upstream_model=route.upstream_model,
                    api_key_env=LEGACY_API_KEY_ENV if key else "",
                    max_concurrency=settings.generation_max_connections,
                    timeouts=timeouts,
                )
            ],
            stop=route.stop,
            max_tokens=route.max_tokens,
            vision=route.vision,
        )
        for name, route in settings.generation_models.items()
    }
    return RoutingConfig(models=models), {LEGACY_API_KEY_ENV: key} if key else {}


def parse_routing(
    text: str, environ: Mapping[str, str], keys: Mapping[str, str] | None = None
) -> RoutingTable:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RoutingError(f"routing file is not valid YAML{where}") from None
    try:
        config = RoutingConfig.model_validate(data)
    except ValidationError as exc:
        # Field paths and messages only: never echo input values, which may be near secrets.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_input=False)[:5]
        )
        raise RoutingError(f"routing file is invalid: {problems}") from None
    try:
        return RoutingTable(config, environ, keys)
    except MissingApiKey as exc:
        raise RoutingError(str(exc)) from None


def _read(path: Path) -> str:
    with path.open("rb") as f:
        raw = f.read(MAX_ROUTING_FILE_BYTES + 1)
    if len(raw) > MAX_ROUTING_FILE_BYTES:
        raise RoutingError(f"routing file is larger than {MAX_ROUTING_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RoutingError("routing file is not UTF-8") from None


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class RoutingSource:
    """Holds the table in force; `watch()` swaps in a new one when the file changes."""

    def __init__(
        self,
        settings: GenerationSettings,
        *,
        environ: Mapping[str, str] | None = None,
        on_change: Callable[[RoutingTable], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._keys = {
            name: key.get_secret_value() for name, key in settings.generation_upstream_api_keys.items()
        }
        self._path = Path(settings.generation_routing_file) if settings.generation_routing_file else None
        self._interval = settings.generation_routing_reload_seconds
        self._on_change = on_change
        self._on_error = on_error
        self._signature: tuple[int, int, int] | None = None
        if self._path is None:
            config, env = legacy_config(settings)
            self.table = RoutingTable(config, env)
        else:
            # A bad file at start-up is fatal: better not ready than serving a guess.
            self._signature = _signature(self._path)
            self.table = self._load()

    @property
    def reloadable(self) -> bool:
        return self._path is not None

    def _load(self) -> RoutingTable:
        assert self._path is not None
        try:
            text = _read(self._path)
        except OSError as exc:
            raise RoutingError(f"cannot read routing file: {exc.strerror or type(exc).__name__}") from None
        return parse_routing(text, self._environ, self._keys)

    def reload_if_changed(self) -> bool:
        """Loads the file again if it changed since the last look; True when a new table is in force."""
        if self._path is None:
            return False
        signature = _signature(self._path)
        if signature is None or signature == self._signature:
            return False
        self._signature = signature
        try:
            table = self._load()
        except RoutingError as exc:
            log.error("routing file rejected; keeping the table in force", extra={"reason": str(exc)})
            if self._on_error is not None:
                self._on_error()
            return False
        self.table = table
        if self._on_change is not None:
            self._on_change(table)
        log.info("routing table reloaded", extra={"models": len(table.config.models)})
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        """Polls the file until `stop` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            except TimeoutError:
                pass
            if not stop.is_set():
                self.reload_if_changed()

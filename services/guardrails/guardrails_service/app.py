import asyncio
import contextlib

import grpc
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from llmsuite_common.rules.policy import Policy

from .checks import size_and_deny_policy
from .metrics import GuardrailsMetrics
from .policy_store import PolicyStore
from .servicer import GuardrailsServicer
from .settings import GuardrailsSettings
from .structured import SchemaLimits


def builtin_policy(settings: GuardrailsSettings) -> Policy:
    """The default policy, with the size limits and deny terms the settings give."""
    base = size_and_deny_policy(
        max_bytes=settings.guardrails_max_input_bytes,
        max_tokens=settings.guardrails_max_input_tokens,
        deny_terms=settings.guardrails_deny_terms,
    )
    defaults = Policy()
    return defaults.model_copy(
        update={"input": defaults.input.model_copy(update={"size": base.input.size, "deny": base.input.deny})}
    )


class GuardrailsApp:
    service_names = (guardrails_pb2.DESCRIPTOR.services_by_name["GuardrailsService"].full_name,)
    # Service tokens must be issued for this name (call_auth, service_tokens).
    audience = "guardrails"

    def __init__(self, settings: GuardrailsSettings, metrics: GuardrailsMetrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics or GuardrailsMetrics()
        self.policies = PolicyStore(settings.guardrails_policy_dir, builtin_policy(settings))
        limits = SchemaLimits(settings.guardrails_max_schema_bytes, settings.guardrails_max_schema_depth)
        self._servicer = GuardrailsServicer(self.policies, self._metrics, limits)
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        guardrails_pb2_grpc.add_GuardrailsServiceServicer_to_server(self._servicer, server)

    async def start(self) -> None:
        self._refresh()
        if self._settings.guardrails_policy_dir is not None:
            self._watcher = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def _refresh(self) -> None:
        errors = self.policies.reload_errors
        self.policies.refresh()
        if self.policies.reload_errors > errors:
            self._metrics.policy_reload_errors.inc(self.policies.reload_errors - errors)

    async def _watch(self) -> None:
        # Polling a handful of stat() calls is cheap and works on every volume type (ConfigMap
        # mounts swap a symlink, which inotify-based watchers often miss). Runs until stop().
        interval = self._settings.guardrails_policy_reload_seconds
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
            if not self._stopping.is_set():
                self._refresh()

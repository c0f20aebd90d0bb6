"""The routing table in force: public names -> routes -> upstream deployments."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from llmsuite_common.errors import NotFound
from pydantic import SecretStr

from .routing_config import AUTO_MODEL, AutoRule, DeploymentConfig, Price, RoutingConfig, Timeouts


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    base_url: str
    upstream_model: str
    api_key: SecretStr = field(repr=False)
    weight: float = 1.0
    max_concurrency: int = 256
    timeouts: Timeouts = Timeouts()
    price: Price = Price()

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def identity(self) -> tuple[str, str, str]:
        """What must stay the same for health state (breaker, load) to carry over a reload."""
        return (self.name, self.base_url, self.upstream_model)


@dataclass(frozen=True, slots=True)
class Route:
    """One public model: how to reach it and what every request to it gets."""

    model: str
    deployments: tuple[Deployment, ...]
    policy: str = "weighted"
    fallback: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    # Accepts images (the routing entry's `vision`).
    vision: bool = False


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What routing may look at: the name asked for and the request's shape."""

    model: str
    org_id: str = ""
    prompt_tokens: int = 0
    max_tokens: int | None = None
    has_tools: bool = False


class MissingApiKey(ValueError):
    pass


def _deployment(
    model: str, index: int, config: DeploymentConfig, environ: Mapping[str, str], keys: Mapping[str, str]
) -> Deployment:
    key = ""
    if config.api_key_ref:
        if config.api_key_ref not in keys:
            raise MissingApiKey(f"GENERATION_UPSTREAM_API_KEYS has no key named {config.api_key_ref!r}")
        key = keys[config.api_key_ref]
    elif config.api_key_env:
        if config.api_key_env not in environ:
            raise MissingApiKey(
                f"environment variable {config.api_key_env} (api key of a '{model}' deployment) is not set"
            )
        key = environ[config.api_key_env]
    return Deployment(
        name=config.name or f"{model}#{index}",
        base_url=config.base_url,
        upstream_model=config.upstream_model,
        api_key=SecretStr(key),
        weight=config.weight,
        max_concurrency=config.max_concurrency,
        timeouts=config.timeouts,
        price=config.price,
    )


class RoutingTable:
    def __init__(
        self, config: RoutingConfig, environ: Mapping[str, str], keys: Mapping[str, str] | None = None
    ) -> None:
        keys = keys or {}
        self.config = config
        self._routes: dict[str, Route] = {}
        self._names: dict[str, str] = {}
        for model, mc in config.models.items():
            self._routes[model] = Route(
                model=model,
                deployments=tuple(
                    _deployment(model, i, d, environ, keys) for i, d in enumerate(mc.deployments)
                ),
                policy=mc.policy,
                fallback=tuple(mc.fallback),
                stop=tuple(mc.stop),
                max_tokens=mc.max_tokens,
                vision=mc.vision,
            )
            for public in (model, *mc.aliases):
                self._names[public] = model

    def public_names(self) -> list[str]:
        names = list(self._names)
        if self.config.auto is not None or any(p.auto for p in self.config.orgs.values()):
            names.append(AUTO_MODEL)
        return names

    def deployments(self) -> list[Deployment]:
        return [d for route in self._routes.values() for d in route.deployments]

    def org_max_tokens(self, org_id: str) -> int | None:
        policy = self.config.orgs.get(org_id) if org_id else None
        return policy.max_tokens if policy else None

    def _auto_rule(self, org_id: str) -> AutoRule | None:
        policy = self.config.orgs.get(org_id) if org_id else None
        if policy is not None and policy.auto is not None:
            return policy.auto
        return self.config.auto

    def resolve(self, request: RouteRequest) -> Route:
        name = request.model
        if name == AUTO_MODEL:
            rule = self._auto_rule(request.org_id)
            if rule is None:
                raise NotFound("model 'auto' is not configured", code="model_not_found", param="model")
            name = rule.small if is_short_request(rule, request) else rule.large
        canonical = self._names.get(name)
        if canonical is None:
            raise NotFound(f"model '{request.model}' does not exist", code="model_not_found", param="model")
        return self._routes[canonical]

    def chain(self, route: Route, *, vision: bool = False) -> list[Route]:
        """The route, then its fallbacks in order (each once); for a request with images (`vision`),
        only the fallbacks that accept them."""
        out = [route]
        for name in route.fallback:
            target = self._routes[self._names[name]]
            if target not in out and (target.vision or not vision):
                out.append(target)
        return out


def is_short_request(rule: AutoRule, request: RouteRequest) -> bool:
    """The documented `auto` rule: classification-like requests are short in and short out."""
    return (
        not request.has_tools
        and request.prompt_tokens <= rule.max_prompt_tokens
        and request.max_tokens is not None
        and request.max_tokens <= rule.max_completion_tokens
    )

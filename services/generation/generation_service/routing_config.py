"""The routing file's schema: public models, their upstream deployments, `auto` and per-org rules.

Loaded from YAML or JSON (JSON is YAML). API keys never appear in the file: a
deployment names either an entry of GENERATION_UPSTREAM_API_KEYS (`api_key_ref`;
one Secret-backed variable holding every key) or an environment variable of its
own (`api_key_env`).
"""

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AUTO_MODEL = "auto"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    # URLs end up in logs and span attributes; a key must not ride along.
    if parts.username or parts.password:
        raise ValueError("must not contain credentials; name the key's environment variable in api_key_env")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    connect: float = Field(5.0, gt=0, description="Seconds to connect (or wait for a pooled connection).")
    read: float = Field(60.0, gt=0, description="Longest silence between two pieces of the response.")
    total: float = Field(600.0, gt=0, description="Longest one upstream request may last, end to end.")


class Price(_Strict):
    """US dollars per million tokens."""

    prompt: float = Field(0.0, ge=0)
    completion: float = Field(0.0, ge=0)
    cached_prompt: float | None = Field(
        None, ge=0, description="Price of cached prompt tokens; `prompt` when unset."
    )

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, prompt_tokens)
        cached_price = self.prompt if self.cached_prompt is None else self.cached_prompt
        return (
            (prompt_tokens - cached) * self.prompt
            + cached * cached_price
            + completion_tokens * self.completion
        ) / 1_000_000


class DeploymentConfig(_Strict):
    name: str = Field("", description="Unique across the file; defaults to '<model>#<index>'.")
    base_url: str = Field(description="OpenAI-compatible base URL ending in /v1.")
    upstream_model: str = Field(min_length=1, description="The model name the upstream expects.")
    api_key_ref: str = Field(
        "", max_length=128, description="Name of the key in GENERATION_UPSTREAM_API_KEYS."
    )
    api_key_env: str = Field("", description="Environment variable holding the bearer key.")
    weight: float = Field(1.0, gt=0, le=1_000_000)
    max_concurrency: int = Field(256, gt=0, le=100_000)
    timeouts: Timeouts = Timeouts()
    price: Price = Price()

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return check_base_url(value)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if value and not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable name")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> "DeploymentConfig":
        if self.api_key_ref and self.api_key_env:
            raise ValueError("set api_key_ref or api_key_env, not both")
        return self


class ModelConfig(_Strict):
    aliases: list[str] = Field(default_factory=list)
    deployments: list[DeploymentConfig] = Field(min_length=1)
    policy: Literal["weighted", "least_busy"] = "weighted"
    # Tried in order when every deployment of this model fails before the first token.
    fallback: list[str] = Field(default_factory=list)
    # Base models keep writing past the answer unless told where a turn ends.
    stop: list[str] = Field(default_factory=list)
    # Default when the request gives none, and a ceiling when it does.
    max_tokens: int | None = Field(None, gt=0)
    # Its deployments accept images (OpenAI `image_url` content parts); requests with images to a
    # model without it are refused (400), and fallbacks without it are skipped for them.
    vision: bool = False


class AutoRule(_Strict):
    """`auto`: requests that look like short classification go to `small`, the rest to `large`.

    Short means: the prompt estimate is at most `max_prompt_tokens`, the request
    caps its answer at `max_completion_tokens` or less, and it offers no tools.
    """

    small: str
    large: str
    max_prompt_tokens: int = Field(512, ge=0)
    max_completion_tokens: int = Field(64, ge=0)


class OrgPolicy(_Strict):
    max_tokens: int | None = Field(None, gt=0, description="Ceiling on completion tokens for every request.")
    auto: AutoRule | None = None


class RoutingConfig(_Strict):
    models: dict[str, ModelConfig] = Field(min_length=1)
    auto: AutoRule | None = None
    orgs: dict[str, OrgPolicy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "RoutingConfig":
        names: dict[str, str] = {}
        deployments: set[str] = set()
        for model, config in self.models.items():
            for public in (model, *config.aliases):
                if not _NAME.match(public):
                    raise ValueError(f"model name {public!r} is not allowed")
                if public == AUTO_MODEL:
                    raise ValueError(f"'{AUTO_MODEL}' is reserved for the auto route")
                if public in names:
                    raise ValueError(f"model name {public!r} is used twice")
                names[public] = model
            for i, deployment in enumerate(config.deployments):
                name = deployment.name or f"{model}#{i}"
                if name in deployments:
                    raise ValueError(f"deployment name {name!r} is used twice")
                deployments.add(name)
        for model, config in self.models.items():
            for target in config.fallback:
                if target not in names or names[target] == model:
                    raise ValueError(f"fallback {target!r} of {model!r} is not another configured model")
        rules = [("auto", self.auto)] + [(f"orgs.{o}.auto", p.auto) for o, p in self.orgs.items()]
        for where, rule in rules:
            if rule is not None:
                for target in (rule.small, rule.large):
                    if target not in names:
                        raise ValueError(f"{where} names unknown model {target!r}")
        return self

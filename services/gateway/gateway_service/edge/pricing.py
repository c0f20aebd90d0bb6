"""Prices per model, and what a request's tokens cost."""

from pydantic import BaseModel, ConfigDict, Field

TOKENS_PER_PRICE_UNIT = 1_000_000


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_per_1m: float = Field(0.0, ge=0, allow_inf_nan=False, description="USD per million prompt tokens.")
    completion_per_1m: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="USD per million completion tokens."
    )


def cost_usd(prices: dict[str, ModelPrice], model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """Unpriced models cost nothing (the local model); budgets then count only priced ones."""
    price = prices.get(model)
    if price is None:
        return 0.0
    return (
        prompt_tokens * price.prompt_per_1m + completion_tokens * price.completion_per_1m
    ) / TOKENS_PER_PRICE_UNIT

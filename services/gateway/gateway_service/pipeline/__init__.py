"""The chat pipeline and the backend calls it makes: guardrails, retrieval, generation."""

"""Gateway: the OpenAI-compatible HTTP edge in front of guardrails, retrieval and generation."""

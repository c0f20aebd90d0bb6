"""Guardrails: cheap input checks before any model or retrieval work."""

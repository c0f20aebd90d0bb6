"""Generation: streams chat completions from an OpenAI-compatible inference server."""

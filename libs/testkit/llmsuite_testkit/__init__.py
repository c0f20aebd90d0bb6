"""What the tests, `make run` (tools.localsuite), the benchmarks and the dashboard tool share:
starting the suite's processes (processes) and the scriptable OpenAI-compatible upstream
(openai_upstream). Installed into the development venv only, never into an image."""

"""Generation-only benchmarks: the service alone against a fast upstream, and its HTTP client choice."""

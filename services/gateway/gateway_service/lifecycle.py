from dataclasses import dataclass


@dataclass
class Lifecycle:
    """Process state the app reports: while draining, /readyz fails so traffic moves elsewhere."""

    draining: bool = False

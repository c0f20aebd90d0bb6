"""Shared runtime for every llmsuite service: settings, gRPC serve(), telemetry, errors.

Importing this package sets the suite's default `GRPC_EXPERIMENTS` (grpc_experiments.py) when the
environment names none. grpc reads that variable once, when it is first imported, and every
service imports this package before grpc.
"""

from .grpc_experiments import apply_default

apply_default()

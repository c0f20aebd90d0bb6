"""Shared runtime for every llmsuite service: settings, gRPC serve(), telemetry, errors."""

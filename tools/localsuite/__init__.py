"""Runs the whole suite as local processes: `make run` and the cross-service tests share it."""

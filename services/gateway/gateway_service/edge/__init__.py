"""Admission and settlement of a request: who the caller is, what it may spend, what is recorded."""

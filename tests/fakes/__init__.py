"""Scriptable stand-ins for external systems, used only to provoke faults in tests."""

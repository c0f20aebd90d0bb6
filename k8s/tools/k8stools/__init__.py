"""Offline checks and rendering for the llmsuite Helm chart (runs in k8s/.venv)."""

"""The Grafana dashboard of the chart, its queries evaluated against the suite's own /metrics."""

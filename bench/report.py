"""The markdown table and the PNG chart of one run."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .targets import LABELS  # noqa: E402

ORDER = ("direct", "direct-again", "passthrough", "litellm", "llmsuite")
COLOURS = {
    "direct": "#9e9e9e",
    "direct-again": "#cfcfcf",
    "passthrough": "#4c72b0",
    "litellm": "#dd8452",
    "llmsuite": "#55a868",
}


def _f(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _mode(stream: bool) -> str:
    return "stream" if stream else "non-stream"


def _mib(value: int | None) -> str:
    return "-" if not value else f"{value / 2**20:,.0f} MiB"


def markdown(res: dict) -> str:
    m = res["machine"]
    s = res["settings"]
    out = [
        "# llmsuite bench: latest run",
        "",
        f"Run {res['started_at']} for {res['duration_s']:.0f} s on commit `{m['commit']}`: "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}.",
        "",
        "Load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in res["load_average_before"])
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in res.get("load_average_after", ()))
        + ". Anything above 0 before the run is other work on the box.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        f"Fake upstream: {s['upstream_delay_ms']} ms to first token, {s['upstream_chunks']} chunks "
        f"{s['upstream_gap_ms']} ms apart (non-streaming answers wait the same total). "
        f"{s['rounds']} interleaved round(s) of {s['cell_seconds']} s per cell after {s['warmup_seconds']} s "
        "warm-up; samples pooled over rounds. Reproduce with `make bench`.",
        "",
    ]
    for name, reason in res.get("unavailable", {}).items():
        out.append(f"- **{name} not measured**: {reason}")
    if res.get("unavailable"):
        out.append("")
    if res.get("ratios"):
        out += [
            "## Throughput ratios (llmsuite ÷ baseline, requests/s)",
            "",
            "| mode | concurrency | vs LiteLLM | vs pass-through | vs direct | note |",
            "|---|---:|---:|---:|---:|---|",
        ]
        errors = {(r["stream"], r["concurrency"]): r["errors"] for r in res.get("rows", ()) if r["target"] == "llmsuite"}
        for r in res["ratios"]:
            failed = errors.get((r["stream"], r["concurrency"]), 0)
            out.append(
                f"| {_mode(r['stream'])} | {r['concurrency']} | {_x(r['vs_litellm'])} | "
                f"{_x(r['vs_passthrough'])} | {_x(r['vs_direct'])} | "
                + (f"**not valid: llmsuite had {failed} errors** |" if failed else "|")
            )
        out.append("")
    if res.get("rows"):
        out += [
            "## Every cell",
            "",
            "Latency in ms; *added* = this target minus direct in the same run. Gap = time between two content "
            "chunks at the client. Fidelity = share of answers whose chunks and text equal the upstream's. "
            "CPU = CPU time of the target's own processes per request.",
            "",
            "| target | mode | c | req/s | p50 | p90 | p99 | added p50 | TTFT p50 | added TTFT | gap p50 | gap p99 "
            "| added gap p99 | fidelity | errors | CPU ms/req |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in res["rows"]:
            out.append(
                f"| {r['target']} | {_mode(r['stream'])} | {r['concurrency']} | {_f(r['rps'], 0)} | "
                f"{_f(r['p50_ms'], 2)} | {_f(r['p90_ms'], 2)} | {_f(r['p99_ms'], 2)} | {_f(r.get('added_p50_ms'), 2)} | "
                f"{_f(r['ttft_p50_ms'], 2)} | {_f(r.get('added_ttft_p50_ms'), 2)} | {_f(r['gap_p50_ms'], 2)} | "
                f"{_f(r['gap_p99_ms'], 2)} | {_f(r.get('added_gap_p99_ms'), 2)} | "
                f"{_f(None if r['fidelity'] is None else 100 * r['fidelity'], 1, '%')} | "
                f"{r['errors']}{' ' + str(r['error_kinds']) if r['error_kinds'] else ''} | "
                f"{_f(r['target_cpu_ms_per_request'], 2)} |"
            )
        out.append("")
    if res.get("loadgen"):
        lg = res["loadgen"]
        out += [
            "## Load generator ceiling",
            "",
            "One aiohttp client process on uvloop with persistent connections, fresh per cell. "
            f"Its busiest cell used {_f(100 * lg['max_cpu_share'], 0, '%')} of one core "
            f"({lg['max_cpu_cell']}); at {_f(lg['max_cpu_rps'], 0)} req/s that puts its own ceiling near "
            f"{_f(lg['ceiling_rps'], 0)} req/s. Direct measured twice (direct vs direct-again) differs by at most "
            f"{_f(lg['direct_spread_pct'], 1, '%')} in req/s and {_f(lg['direct_p50_spread_ms'], 2)} ms in p50: "
            "differences below that are noise.",
            "",
        ]
    if res.get("peak_rss"):
        out += ["## Peak RSS (kernel high-water mark, start-up and matrix)", "", "| target | process | peak RSS |", "|---|---|---:|"]
        for target, procs in res["peak_rss"].items():
            for proc, value in procs.items():
                out.append(f"| {target} | {proc} | {_mib(value)} |")
        out.append("")
    for key, title in (
        ("guardrails", "Guardrails CheckInput"),
        ("embedding", "Embedding: batched vs one at a time"),
        ("retrieval", "Retrieval search latency"),
        ("soak", "Soak: RSS growth"),
        ("profile", "Gateway profile (py-spy)"),
    ):
        section = res.get(key)
        if section:
            out += [f"## {title}", "", *section["lines"], ""]
    return "\n".join(out)


def chart(res: dict, path: Path) -> None:
    rows = res["rows"]
    targets = [t for t in ORDER if any(r["target"] == t for r in rows)]
    concurrency = sorted({r["concurrency"] for r in rows})
    streams = sorted({r["stream"] for r in rows})
    index = {(r["target"], r["stream"], r["concurrency"]): r for r in rows}
    fig, axes = plt.subplots(1, len(streams) + 1, figsize=(6 * (len(streams) + 1), 4.8))
    width = 0.8 / max(len(targets), 1)
    for ax, stream in zip(axes, streams):
        for i, target in enumerate(targets):
            values = [index.get((target, stream, c), {}).get("rps", 0.0) for c in concurrency]
            xs = [j + i * width for j in range(len(concurrency))]
            ax.bar(xs, values, width, label=LABELS[target], color=COLOURS[target])
        ax.set_xticks([j + width * (len(targets) - 1) / 2 for j in range(len(concurrency))])
        ax.set_xticklabels([f"c={c}" for c in concurrency])
        ax.set_yscale("log")
        ax.set_ylabel("requests/s (log)")
        ax.set_title(f"Throughput, {_mode(stream)}")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[-1]
    low = concurrency[0]
    names, p50, ttft = [], [], []
    for target in targets:
        names.append(target)
        p50.append((index.get((target, False, low)) or {}).get("p50_ms") or 0.0)
        ttft.append((index.get((target, True, low)) or {}).get("ttft_p50_ms") or 0.0)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50 latency, non-stream", color="#4c72b0")
    ax.bar([x + 0.2 for x in xs], ttft, 0.4, label="time to first token p50, stream", color="#55a868")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=20)
    ax.set_ylabel("ms")
    ax.set_title(f"Latency at c={low}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(targets), fontsize=8, frameon=False)
    m = res["machine"]
    fig.suptitle(f"llmsuite bench {res['started_at']} - {m['cpu']}, {m['cores']} cores - commit {m['commit']}", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)

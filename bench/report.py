"""The markdown table and the PNG chart of one run."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .targets import LABELS

ORDER = ("direct", "direct-again", "passthrough", "passthrough-fast", "litellm", "llmsuite")
COLOURS = {
    "direct": "#9e9e9e",
    "direct-again": "#cfcfcf",
    "passthrough": "#4c72b0",
    "passthrough-fast": "#8172b3",
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


def _shape_text(s: dict, shape: str) -> str:
    if shape == "long":
        return f"{s.get('long_chunks', 200)} chunks {s.get('long_gap_ms', 20.0)} ms apart"
    return f"{s['upstream_chunks']} chunks {s['upstream_gap_ms']} ms apart"


def _met(value: bool | None) -> str:
    return "not measured" if value is None else ("**met**" if value else "**not met**")


def _goal_value(g: dict) -> str:
    if g["value"] is None:
        return "-"
    digits = 3 if g["unit"] == "ms" and g["limit"] < 1 else (1 if g["unit"] == "%" else 2)
    unit = {"ms": " ms", "x": "x", "%": " %"}.get(g["unit"], g["unit"])
    return f"{g['value']:,.{digits}f}{unit}"


def _goals(res: dict) -> list[str]:
    out = [
        "## Goals",
        "",
        "CPU goals count all three llmsuite processes and take the worst loaded cell (c ≥ 16) of their shape and "
        "mode; *× fast* is the same figure as a multiple of the fast pass-through's CPU per request in that cell "
        "(machines differ about 2x per core; the multiple travels better). Latency goals are added to direct in "
        "the same run.",
        "",
        "| goal | bound | measured | cell | × fast | |",
        "|---|---:|---:|---|---:|---|",
    ]
    for g in res["goals"]:
        out.append(
            f"| {g['goal']} | {g['bound']} | {_goal_value(g)} | {g['cell'] or '-'} | {_x(g['vs_fast'])} | "
            f"{_met(g['met'])} |"
        )
    return [*out, ""]


def _ratios(res: dict) -> list[str]:
    out = [
        "## Throughput ratios (llmsuite ÷ baseline, requests/s)",
        "",
        "| shape | mode | concurrency | vs LiteLLM | vs FastAPI pass-through | vs fast pass-through | vs direct | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    errors = {
        (r["shape"], r["stream"], r["concurrency"]): r["errors"]
        for r in res.get("rows", ())
        if r["target"] == "llmsuite"
    }
    for r in res["ratios"]:
        shape = r.get("shape", "short")
        failed = errors.get((shape, r["stream"], r["concurrency"]), 0)
        out.append(
            f"| {shape} | {_mode(r['stream'])} | {r['concurrency']} | {_x(r['vs_litellm'])} | "
            f"{_x(r['vs_passthrough'])} | {_x(r.get('vs_passthrough_fast'))} | {_x(r['vs_direct'])} | "
            + (f"**not valid: llmsuite had {failed} errors** |" if failed else "|")
        )
    return [*out, ""]


def _cells(res: dict, shape: str) -> list[str]:
    rows = [r for r in res["rows"] if r.get("shape", "short") == shape]
    if not rows:
        return []
    out = [
        f"## Every cell, {shape} answers ({_shape_text(res['settings'], shape)})",
        "",
        "Latency in ms; *added* = this target minus direct in the same run. Gap = time between two content "
        "chunks at the client. Fidelity = share of answers whose chunks and text equal the upstream's. "
        "CPU = CPU time of the target's own processes per request (warm-up requests and their CPU included) and "
        "per content chunk; *× fast* = that CPU as a multiple of the fast pass-through's in the same cell.",
        "",
        "| target | mode | c | req/s | p50 | p90 | p99 | added p50 | TTFT p50 | added TTFT | gap p50 | gap p99 "
        "| added gap p99 | fidelity | errors | CPU ms/req | CPU ms/chunk | × fast |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['target']} | {_mode(r['stream'])} | {r['concurrency']} | {_f(r['rps'], 0 if r['rps'] >= 100 else 1)} | "
            f"{_f(r['p50_ms'], 2)} | {_f(r['p90_ms'], 2)} | {_f(r['p99_ms'], 2)} | {_f(r.get('added_p50_ms'), 2)} | "
            f"{_f(r['ttft_p50_ms'], 2)} | {_f(r.get('added_ttft_p50_ms'), 2)} | {_f(r['gap_p50_ms'], 2)} | "
            f"{_f(r['gap_p99_ms'], 2)} | {_f(r.get('added_gap_p99_ms'), 2)} | "
            f"{_f(None if r['fidelity'] is None else 100 * r['fidelity'], 1, '%')} | "
            f"{r['errors']}{' ' + str(r['error_kinds']) if r['error_kinds'] else ''} | "
            f"{_f(r['target_cpu_ms_per_request'], 2)} | {_f(r.get('target_cpu_ms_per_chunk'), 3)} | "
            f"{_x(r.get('cpu_vs_fast'))} |"
        )
    return [*out, ""]


# The suites that report their own lines, in the order the report shows them.
SECTIONS = (
    ("guardrails", "Guardrails CheckInput"),
    ("tokens", "Service tokens: CPU per backend call"),
    ("embedding", "Embedding, local model: batched vs one at a time vs the library's encode"),
    ("embedding_remote", "Embedding, remote endpoint: batched vs one at a time"),
    ("retrieval", "Retrieval search latency"),
    ("retrieval_service", "Retrieval service: Search and ingest against its model's floor"),
    ("soak", "Soak: RSS growth"),
    ("profile", "Gateway profile (py-spy)"),
)


def markdown(res: dict) -> str:
    m = res["machine"]
    s = res["settings"]
    shapes = s.get("shapes", ["short"])
    long_cells = (
        f" Long answers: {s['long_rounds']} round(s) of {s['long_cell_seconds']} s per cell after "
        f"{s['long_warmup_seconds']} s warm-up (a worker starts no new answer after the cell's time, and the cell "
        "ends when every answer has)."
        if "long" in shapes
        else ""
    )
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
        f"Fake upstream: {s['upstream_delay_ms']} ms to first token, then "
        + " or ".join(f"{_shape_text(s, shape)} ({shape} answers)" for shape in shapes)
        + "; non-streaming answers wait the same total. "
        f"{s['rounds']} interleaved round(s) of {s['cell_seconds']} s per cell after {s['warmup_seconds']} s "
        f"warm-up; samples pooled over rounds.{long_cells} Reproduce with `make bench`.",
        "",
    ]
    for name, reason in res.get("unavailable", {}).items():
        out.append(f"- **{name} not measured**: {reason}")
    if res.get("unavailable"):
        out.append("")
    if res.get("goals"):
        out += _goals(res)
    if res.get("ratios"):
        out += _ratios(res)
    if res.get("rows"):
        for shape in ("short", "long"):
            out += _cells(res, shape)
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
        out += [
            "## Peak RSS (kernel high-water mark, start-up and matrix)",
            "",
            "| target | process | peak RSS |",
            "|---|---|---:|",
        ]
        for target, procs in res["peak_rss"].items():
            for proc, value in procs.items():
                out.append(f"| {target} | {proc} | {_mib(value)} |")
        out.append("")
    for key, title in SECTIONS:
        section = res.get(key)
        if section:
            out += [f"## {title}", "", *section["lines"], ""]
    return "\n".join(out)


def chart(res: dict, path: Path) -> None:
    """Throughput and c=1 latency of the short answers, and CPU per request of every shape."""
    rows = res["rows"]
    short = [r for r in rows if r.get("shape", "short") == "short"]
    targets = [t for t in ORDER if any(r["target"] == t for r in rows)]
    concurrency = sorted({r["concurrency"] for r in short})
    streams = sorted({r["stream"] for r in short})
    index = {(r["target"], r["stream"], r["concurrency"]): r for r in short}
    panels = len(streams) + 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.8))
    width = 0.8 / max(len(targets), 1)
    for ax, stream in zip(axes, streams, strict=False):
        for i, target in enumerate(targets):
            values = [index.get((target, stream, c), {}).get("rps", 0.0) for c in concurrency]
            xs = [j + i * width for j in range(len(concurrency))]
            ax.bar(xs, values, width, label=LABELS[target], color=COLOURS[target])
        ax.set_xticks([j + width * (len(targets) - 1) / 2 for j in range(len(concurrency))])
        ax.set_xticklabels([f"c={c}" for c in concurrency])
        ax.set_yscale("log")
        ax.set_ylabel("requests/s (log)")
        ax.set_title(f"Throughput, {_mode(stream)}, short answers")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[len(streams)]
    low = concurrency[0] if concurrency else 1
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
    ax.set_title(f"Latency at c={low}, short answers")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    # CPU per request in each shape and mode at its highest concurrency.
    ax = axes[-1]
    groups = []
    for shape in ("short", "long"):
        for stream in (False, True):
            levels = [
                r["concurrency"] for r in rows if r.get("shape", "short") == shape and r["stream"] == stream
            ]
            if levels:
                groups.append((shape, stream, max(levels)))
    cpu_index = {(r.get("shape", "short"), r["target"], r["stream"], r["concurrency"]): r for r in rows}
    spenders = [t for t in targets if not t.startswith("direct")]
    bar = 0.8 / max(len(spenders), 1)
    for i, target in enumerate(spenders):
        values = [
            (cpu_index.get((shape, target, stream, c)) or {}).get("target_cpu_ms_per_request") or 0.0
            for shape, stream, c in groups
        ]
        ax.bar([j + i * bar for j in range(len(groups))], values, bar, color=COLOURS[target])
    ax.set_xticks([j + bar * (len(spenders) - 1) / 2 for j in range(len(groups))])
    ax.set_xticklabels([f"{shape}\n{_mode(stream)}\nc={c}" for shape, stream, c in groups], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("CPU ms per request (log)")
    ax.set_title("CPU of the target's processes per request")
    ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(targets), fontsize=8, frameon=False)
    m = res["machine"]
    fig.suptitle(
        f"llmsuite bench {res['started_at']} - {m['cpu']}, {m['cores']} cores - commit {m['commit']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)

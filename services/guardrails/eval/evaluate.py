"""Scores the input guardrail's injection check on the committed data (make eval-guardrails).

For the patterns alone, the learned detector alone and both: detection on jailbreak/injection
prompts and false positives on ordinary prompts at the default policy's thresholds (block at 0.7,
flag at 0.4; retrieved chunks are dropped at 0.5), on the dev split (tuned on), the held-out split
(never fitted or tuned on) and the independent sets (in-the-wild jailbreaks, NotInject); the same on
retrieved chunks (ordinary BIPIA documents, and the same documents with a held-out attack inside);
and the CPU time the check adds per call, p50/p99 by prompt length.
"""

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from guardrails_service.engine import Guard
from guardrails_service.injection import detect
from llmsuite_common.rules.policy import InjectionCheck, Policy

from .data_sets import Prompt, contexts, independent, prompts

DETECTORS = ("patterns", "learned", "both")
BLOCK, FLAG, CHUNK = (
    InjectionCheck().threshold,
    InjectionCheck().warn_threshold,
    Policy().context.injection.threshold,
)
LENGTHS = (100, 500, 2048, 8192)


def rates(
    items: list[Prompt], score: Callable[[str], float], threshold: float
) -> tuple[float, float, int, int]:
    scores = [(score(p.text), p.label) for p in items]
    pos = [s for s, y in scores if y == 1]
    neg = [s for s, y in scores if y == 0]
    det = sum(s >= threshold for s in pos) / len(pos) if pos else float("nan")
    fpr = sum(s >= threshold for s in neg) / len(neg) if neg else float("nan")
    return det, fpr, len(pos), len(neg)


def poisoned_chunks(docs: list[str], attacks: list[Prompt], seed: int = 7) -> list[str]:
    """Each attack put inside an ordinary document, at a random sentence boundary."""
    rng = random.Random(seed)
    out = []
    for attack in attacks:
        doc = rng.choice(docs)
        cut = doc.find(". ", rng.randrange(max(1, len(doc))))
        cut = len(doc) if cut < 0 else cut + 2
        out.append(f"{doc[:cut]}{attack.text} {doc[cut:]}")
    return out


def cpu_us(check: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.thread_time_ns()
        check()
        out.append((time.thread_time_ns() - t0) / 1000)
    return out


def latency(detector: str, runs: int) -> dict[str, tuple[float, float]]:
    """CPU µs the injection check adds to CheckInput, by prompt length (ordinary prose)."""
    heldout = [p.text for p in prompts("heldout") if p.label == 0]
    prose = " ".join(heldout)
    guard = Guard(
        Policy(input=Policy().input.model_copy(update={"injection": InjectionCheck(detector=detector)}))
    )  # type: ignore[arg-type]
    off = Guard(Policy(input=Policy().input.model_copy(update={"injection": InjectionCheck(enabled=False)})))
    out = {}
    for n in LENGTHS:
        text = prose[:n]
        with_check = cpu_us(lambda text=text: guard.check_input([text]), runs)  # type: ignore[misc]
        without = cpu_us(lambda text=text: off.check_input([text]), runs)  # type: ignore[misc]
        base = statistics.median(without)
        added = sorted(max(0.0, x - base) for x in with_check)
        out[f"{n} B"] = (added[len(added) // 2], added[min(len(added) - 1, int(len(added) * 0.99))])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=300, help="calls per latency cell")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args()
    dev, heldout, ind = prompts("dev"), prompts("heldout"), independent()
    wild = [p for p in ind if p.label == 1]
    notinject = [p for p in ind if p.label == 0]
    docs = contexts()
    attacks = [p for p in heldout if p.label == 1]
    chunk_set = [Prompt(d, 0, "bipia") for d in docs] + [
        Prompt(t, 1, "poisoned") for t in poisoned_chunks(docs, attacks)
    ]
    results: dict[str, dict[str, object]] = {}
    print(
        f"Data: dev {sum(p.label for p in dev)} attacks / {sum(1 - p.label for p in dev)} ordinary; "
        f"held-out {len(attacks)} / {sum(1 - p.label for p in heldout)}; in-the-wild {len(wild)}; "
        f"NotInject {len(notinject)}; chunks {len(docs)} ordinary / {len(attacks)} poisoned\n"
    )
    header = (
        "| detector | dev det / FP | held-out det / FP | held-out det / FP at flag (0.4) "
        "| in-the-wild det | NotInject FP | chunks det / FP (0.7) |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|")
    for name in DETECTORS:

        def score(text: str, name: str = name) -> float:
            return detect(text, name).score  # type: ignore[arg-type]

        d = rates(dev, score, BLOCK)
        h = rates(heldout, score, BLOCK)
        hf = rates(heldout, score, FLAG)
        w = rates(wild, score, BLOCK)
        n = rates(notinject, score, BLOCK)
        c = rates(chunk_set, score, CHUNK)
        results[name] = {
            "dev": d,
            "heldout": h,
            "heldout_flag": hf,
            "inthewild": w,
            "notinject": n,
            "chunks": c,
        }
        print(
            f"| {name} | {d[0]:.1%} / {d[1]:.2%} | {h[0]:.1%} / {h[1]:.2%} | {hf[0]:.1%} / {hf[1]:.2%} "
            f"| {w[0]:.1%} | {n[1]:.1%} | {c[0]:.1%} / {c[1]:.1%} |"
        )
    print("\nCPU time the injection check adds to CheckInput, µs p50 / p99 (in process, one core):\n")
    print("| detector | " + " | ".join(f"{n} B" for n in LENGTHS) + " |")
    print("|---|" + "---|" * len(LENGTHS))
    for name in DETECTORS:
        lat = latency(name, args.runs)
        results[name]["cpu_us"] = lat
        print(f"| {name} | " + " | ".join(f"{p50:.0f} / {p99:.0f}" for p50, p99 in lat.values()) + " |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

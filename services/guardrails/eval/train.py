"""Trains the learned injection detector and writes guardrails_service/injection_model.json.gz.

    .venv/bin/python -m services.guardrails.eval.train      (make train-guardrails)

Fitted on the `train` split only; the regularization strength and the operating point are chosen on
`dev`. The `heldout` split and the independent sets are never read here. Deterministic: the same
data gives the same weights.

The model is a logistic regression over the features injection_model scores: each text is cut into
the windows the scorer uses, each window's unigrams and bigrams (scaled by 1/sqrt(window length))
plus the text's order-independent cues make one row, and a text's rows share its weight. Items of
a large group (one template filled with many goals) are down-weighted by 1/sqrt(group size).
"""

import argparse
import gzip
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
from guardrails_service import injection_model as im
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression

from .data_sets import Prompt, prompts

OUT = Path(im.__file__).with_name("injection_model.json.gz")
# Above this many non-zero weights the smallest are dropped (a few hundred KB compressed).
MAX_FEATURES = 40_000
# The policy's default block threshold: the learned score crosses it where the dev split's
# false-positive budget is spent.
POLICY_THRESHOLD = 0.7
DEV_FPR_BUDGET = 0.002


def rows(items: list[Prompt]) -> tuple[list[dict[str, float]], list[int], list[float]]:
    groups = Counter(p.group for p in items)
    feats: list[dict[str, float]] = []
    labels: list[int] = []
    weights: list[float] = []
    for p in items:
        toks = im.tokens(p.text)
        if not toks:
            continue
        found = im.cues(toks, im.normalize(p.text), p.text)
        spans = list(im.windows(len(toks)))
        for start, end in spans:
            row: dict[str, float] = {}
            scale = 1.0 / math.sqrt(max(end - start, im.MIN_NORM))
            for f in im.window_features(toks, start, end):
                row[f] = row.get(f, 0.0) + scale
            for c in found:
                row[c] = 1.0
            feats.append(row)
            labels.append(p.label)
            weights.append(1.0 / math.sqrt(groups[p.group]) / len(spans))
    return feats, labels, weights


def fit(items: list[Prompt], c: float) -> im.InjectionModel:
    feats, labels, weights = rows(items)
    vec = DictVectorizer()
    x = vec.fit_transform(feats).tocsr()
    # liblinear takes 32-bit sparse indices only.
    x.indices = x.indices.astype(np.int32)
    x.indptr = x.indptr.astype(np.int32)
    y = np.array(labels)
    w = np.array(weights)
    # Classes balanced by total weight.
    for cls in (0, 1):
        w[y == cls] *= 0.5 * w.sum() / w[y == cls].sum()
    clf = LogisticRegression(C=c, max_iter=5000, solver="liblinear")
    clf.fit(x, y, sample_weight=w)
    coef = clf.coef_[0]
    keep = np.argsort(-np.abs(coef))[:MAX_FEATURES]
    names = vec.get_feature_names_out()
    weights_out = {str(names[i]): round(float(coef[i]), 5) for i in keep if abs(coef[i]) >= 1e-4}
    return im.InjectionModel(weights_out, float(clf.intercept_[0]), "unversioned")


def operating_logit(model: im.InjectionModel, dev: list[Prompt]) -> tuple[float, float]:
    """The logit above which at most DEV_FPR_BUDGET of dev's ordinary prompts score, and the
    dev detection rate there."""
    scores = [(_logit(model.score(p.text).score), p.label) for p in dev]
    neg = sorted(s for s, y in scores if y == 0)
    cut = neg[min(len(neg) - 1, math.floor(len(neg) * (1 - DEV_FPR_BUDGET)))]
    pos = [s for s, y in scores if y == 1]
    return cut, sum(s > cut for s in pos) / len(pos)


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT)
    # The committed model is C=16, the best of this grid on dev (`make train-guardrails` gives its weights).
    parser.add_argument("--c", type=float, nargs="*", default=[0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    args = parser.parse_args()
    train, dev = prompts("train"), prompts("dev")
    best: tuple[float, float, float, im.InjectionModel] | None = None
    for c in args.c:
        model = fit(train, c)
        cut, detection = operating_logit(model, dev)
        print(f"C={c:g}: dev detection {detection:.3f} at dev FPR <= {DEV_FPR_BUDGET:.1%}")
        if best is None or detection > best[1]:
            best = (c, detection, cut, model)
    assert best is not None
    c, detection, cut, model = best
    # Shift the bias so that the dev operating point lands on the policy's threshold.
    bias = model.bias + _logit(POLICY_THRESHOLD) - (cut + 1e-6)
    doc = {
        "version": f"ngram-cues-C{c:g}-{len(train)}",
        "trained_on": "services/guardrails/eval/data/prompts.jsonl.gz split=train",
        "C": c,
        "dev_detection": round(detection, 4),
        "dev_fpr_budget": DEV_FPR_BUDGET,
        "window": im.WINDOW,
        "bias": round(bias, 5),
        "weights": dict(sorted(model.weights.items())),
    }
    with args.out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(json.dumps(doc, separators=(",", ":")).encode())
    print(f"chose C={c:g}; {len(model.weights)} weights -> {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

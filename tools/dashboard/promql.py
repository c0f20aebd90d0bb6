"""A small PromQL evaluator over scraped samples, for drawing the dashboard without a Prometheus.

It evaluates the subset the dashboard's queries use, with Prometheus' semantics: selectors with
=, !=, =~, !~ (anchored) and a 5-minute lookback; rate and increase (counter resets handled;
rate is the slope between the first and last sample in the window, without Prometheus'
extrapolation to the window's edges); histogram_quantile with Prometheus' interpolation;
clamp_min/clamp_max; sum, avg, min, max and count with by/without; arithmetic and comparison
operators between scalars and vectors with on/ignoring matching; and/or/unless. Anything else
raises Unsupported, so a dashboard query the picture cannot show fails loudly.
"""

import math
import re
from collections import defaultdict
from collections.abc import Callable

import promql_parser as pp
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Vector = dict[Labels, float]
Matrix = dict[Labels, list[tuple[float, float]]]
Value = float | Vector | Matrix

LOOKBACK_SECONDS = 300.0
NAME = "__name__"


class Unsupported(ValueError):
    pass


def _labels(d: dict[str, str]) -> Labels:
    return tuple(sorted(d.items()))


def _drop_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != NAME)


class Store:
    """Samples of every scrape: series labels (incl. __name__) -> [(time, value)], time ascending."""

    def __init__(self) -> None:
        self.series: dict[Labels, list[tuple[float, float]]] = defaultdict(list)

    def add(self, t: float, text: str, extra: dict[str, str]) -> None:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = _labels({**sample.labels, **extra, NAME: sample.name})
                self.series[key].append((t, float(sample.value)))

    def select(self, node: pp.VectorSelector, start: float, end: float) -> Matrix:
        if node.offset or node.at:
            raise Unsupported("offset and @ modifiers")
        matchers = [(NAME, "Equal", node.name)] if node.name else []
        matchers += [(m.name, str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers]
        if node.matchers.or_matchers:
            raise Unsupported("`or` inside a selector")
        out: Matrix = {}
        for key, samples in self.series.items():
            labels = dict(key)
            if all(_matches(labels.get(n, ""), op, v) for n, op, v in matchers):
                window = [(ts, v) for ts, v in samples if start < ts <= end]
                if window:
                    out[key] = window
        return out


def _matches(value: str, op: str, want: str) -> bool:
    if op == "Equal":
        return value == want
    if op == "NotEqual":
        return value != want
    if op == "Re":
        return re.fullmatch(want, value) is not None
    if op == "NotRe":
        return re.fullmatch(want, value) is None
    raise Unsupported(f"matcher {op}")


def _rate(samples: list[tuple[float, float]]) -> float | None:
    if len(samples) < 2:
        return None
    increase, prev = 0.0, samples[0][1]
    for _, v in samples[1:]:
        increase += v if v < prev else v - prev  # a drop is a counter reset
        prev = v
    return increase / (samples[-1][0] - samples[0][0])


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' bucketQuantile: (upper bound, cumulative count) pairs, any order."""
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return math.nan
    counts = [c for _, c in buckets]
    for i in range(1, len(counts)):  # scrapes of different moments can break monotonicity
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total == 0:
        return math.nan
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, end, count = 0.0, buckets[b][0], counts[b]
    if b > 0:
        start, count, rank = buckets[b - 1][0], count - counts[b - 1], rank - counts[b - 1]
    return start + (end - start) * (rank / count) if count else start


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b else (math.nan if a == 0 else math.copysign(math.inf, a)),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


class Evaluator:
    def __init__(self, store: Store) -> None:
        self.store = store

    def instant(self, expr: str, t: float) -> Vector | float:
        value = self._eval(pp.parse(expr), t)
        if isinstance(value, dict) and value and isinstance(next(iter(value.values())), list):
            raise Unsupported("a range vector is not an instant result")
        return value  # type: ignore[return-value]

    def _eval(self, node: object, t: float) -> Value:
        if isinstance(node, pp.NumberLiteral):
            return float(node.val)
        if isinstance(node, pp.ParenExpr):
            return self._eval(node.expr, t)
        if isinstance(node, pp.UnaryExpr):
            inner = self._eval(node.expr, t)
            return -inner if isinstance(inner, float) else {k: -v for k, v in inner.items()}  # type: ignore[misc]
        if isinstance(node, pp.VectorSelector):
            return {k: s[-1][1] for k, s in self.store.select(node, t - LOOKBACK_SECONDS, t).items()}
        if isinstance(node, pp.MatrixSelector):
            seconds = node.range.total_seconds()
            return self.store.select(node.vector_selector, t - seconds, t)
        if isinstance(node, pp.Call):
            return self._call(node, t)
        if isinstance(node, pp.AggregateExpr):
            return self._aggregate(node, t)
        if isinstance(node, pp.BinaryExpr):
            return self._binary(node, t)
        raise Unsupported(type(node).__name__)

    def _call(self, node: pp.Call, t: float) -> Value:
        name = node.func.name
        if name in ("rate", "increase"):
            (arg,) = node.args
            seconds = arg.range.total_seconds()
            out: Vector = {}
            for key, samples in self._eval(arg, t).items():  # type: ignore[union-attr]
                r = _rate(samples)
                if r is not None:
                    out[_drop_name(key)] = r if name == "rate" else r * seconds
            return out
        if name == "histogram_quantile":
            q = self._eval(node.args[0], t)
            vector = self._eval(node.args[1], t)
            assert isinstance(q, float) and isinstance(vector, dict)
            groups: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
            for key, v in vector.items():
                labels = dict(_drop_name(key))
                le = labels.pop("le", None)
                if le is not None:
                    groups[_labels(labels)].append((float(le), float(v)))  # type: ignore[arg-type]
            return {k: histogram_quantile(q, b) for k, b in groups.items()}
        if name in ("clamp_min", "clamp_max"):
            vector, bound = self._eval(node.args[0], t), self._eval(node.args[1], t)
            pick = max if name == "clamp_min" else min
            return {_drop_name(k): pick(v, bound) for k, v in vector.items()}  # type: ignore[union-attr,type-var]
        raise Unsupported(f"function {name}")

    def _aggregate(self, node: pp.AggregateExpr, t: float) -> Vector:
        op = str(node.op)
        if node.param is not None:
            raise Unsupported(f"aggregation {op} with a parameter")
        vector = self._eval(node.expr, t)
        assert isinstance(vector, dict)
        mod = node.modifier
        groups: dict[Labels, list[float]] = defaultdict(list)
        for key, v in vector.items():
            labels = dict(_drop_name(key))
            if mod is None:
                group: Labels = ()
            elif str(mod.type).endswith("By"):
                group = _labels({n: labels[n] for n in mod.labels if n in labels})
            else:
                group = _labels({n: x for n, x in labels.items() if n not in mod.labels})
            groups[group].append(v)  # type: ignore[arg-type]
        reducers: dict[str, Callable[[list[float]], float]] = {
            "sum": sum, "avg": lambda xs: sum(xs) / len(xs), "min": min, "max": max, "count": len,
        }  # fmt: skip
        if op not in reducers:
            raise Unsupported(f"aggregation {op}")
        return {g: float(reducers[op](vs)) for g, vs in groups.items()}

    def _binary(self, node: pp.BinaryExpr, t: float) -> Value:
        op = str(node.op)
        lhs, rhs = self._eval(node.lhs, t), self._eval(node.rhs, t)
        mod = node.modifier
        want_bool = bool(mod and mod.return_bool)
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in _ARITH:
                return _ARITH[op](lhs, rhs)
            return float(_COMPARE[op](lhs, rhs))
        if isinstance(lhs, float) or isinstance(rhs, float):
            vector, scalar, scalar_left = (rhs, lhs, True) if isinstance(lhs, float) else (lhs, rhs, False)
            out: Vector = {}
            for key, v in vector.items():  # type: ignore[union-attr]
                a, b = (scalar, v) if scalar_left else (v, scalar)
                if op in _ARITH:
                    out[_drop_name(key)] = _ARITH[op](a, b)  # type: ignore[arg-type]
                elif op in _COMPARE:
                    keep = _COMPARE[op](a, b)  # type: ignore[arg-type]
                    if want_bool:
                        out[_drop_name(key)] = float(keep)
                    elif keep:
                        out[key] = v  # type: ignore[assignment]
                else:
                    raise Unsupported(f"{op} between a vector and a scalar")
            return out
        return self._vector_vector(op, lhs, rhs, mod, want_bool)  # type: ignore[arg-type]

    @staticmethod
    def _vector_vector(op: str, lhs: Vector, rhs: Vector, mod: object, want_bool: bool) -> Vector:
        matching = getattr(mod, "matching", None)
        if getattr(mod, "card", None) is not None and not str(mod.card).endswith("OneToOne"):  # type: ignore[union-attr]
            raise Unsupported("group_left / group_right")
        on = matching is not None and str(matching.type).endswith("Include")
        names = set(matching.labels) if matching is not None else set()

        def signature(key: Labels) -> Labels:
            return tuple(kv for kv in _drop_name(key) if (kv[0] in names) == on)

        if op in ("and", "or", "unless"):
            right = {signature(k) for k in rhs}
            if op == "and":
                return {k: v for k, v in lhs.items() if signature(k) in right}
            if op == "unless":
                return {k: v for k, v in lhs.items() if signature(k) not in right}
            left = {signature(k) for k in lhs}
            return {**lhs, **{k: v for k, v in rhs.items() if signature(k) not in left}}
        by_sig: dict[Labels, tuple[Labels, float]] = {}
        for key, v in rhs.items():
            if signature(key) in by_sig:
                raise Unsupported("many-to-one match without group_left")
            by_sig[signature(key)] = (key, v)
        out: Vector = {}
        for key, a in lhs.items():
            match = by_sig.get(signature(key))
            if match is None:
                continue
            b = match[1]
            result_key = signature(key) if on else tuple(kv for kv in _drop_name(key) if kv[0] not in names)
            if op in _ARITH:
                out[result_key] = _ARITH[op](a, b)
            elif op in _COMPARE:
                keep = _COMPARE[op](a, b)
                if want_bool:
                    out[result_key] = float(keep)
                elif keep:
                    out[key] = a
            else:
                raise Unsupported(f"operator {op}")
        return out

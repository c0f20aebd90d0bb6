"""Prompt-injection and jailbreak heuristics with a scored verdict.

The same rules run on user input and on retrieved chunks (indirect injection). Each rule has a
weight; fired weights combine as independent evidence, score = 1 - prod(1 - w), so one strong
signal or several weak ones cross the threshold, and the score stays in [0, 1).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import ahocorasick_rs

from .injection_model import default_model
from .injection_model import normalize as _normalize_deep

Detector = Literal["patterns", "learned", "both"]

_PREV = r"(?:all |any |the |your |my |these |those )*(?:previous|prior|above|earlier|preceding|original|initial|system)"
_RULES = r"(?:instructions?|prompts?|rules|directions|guidelines|guardrails|constraints|context)"

# (name, weight, anchors, pattern): every match of a pattern contains one of its anchors (single
# words, so whitespace tricks cannot split them). One Aho-Corasick pass finds the anchors present,
# and only their rules' patterns run: clean text costs one scan instead of a regex pass per rule.
RULES: tuple[tuple[str, float, tuple[str, ...], str], ...] = (
    (
        "ignore_instructions",
        0.9,
        ("ignor", "disregard", "forget", "overrid", "skip", "bypass"),
        rf"\b(?:ignore|disregard|forget|override|skip|bypass)\b.{{0,20}}\b{_PREV}\b.{{0,12}}\b{_RULES}\b",
    ),
    (
        "new_instructions",
        0.6,
        ("instruction",),
        r"\b(?:new|updated|real|actual) (?:system )?instructions? ?(?::|are\b|follow)",
    ),
    (
        "reveal_system_prompt",
        0.8,
        ("prompt", "instructions"),
        r"\b(?:reveal|show|print|repeat|output|leak|display|tell me)\b.{0,30}\b(?:system prompt|hidden "
        r"(?:instructions|prompt)|initial (?:instructions|prompt)|your instructions)\b",
    ),
    (
        "persona_override",
        0.8,
        ("dan", "unrestricted", "jailbroken", "unfiltered", "uncensored", "developer", "evil"),
        r"\byou are (?:now|no longer)\b.{0,40}\b(?:dan|unrestricted|jailbroken|unfiltered|uncensored|developer mode|evil)\b",
    ),
    (
        "jailbreak_terms",
        0.5,
        ("jailbr", "dan", "developer", "anything"),
        r"\b(?:jailbreak|jailbroken|dan mode|developer mode enabled|do anything now)\b",
    ),
    (
        "no_restrictions",
        0.6,
        ("restriction", "filter", "limitation", "safety", "censorship", "polic"),
        r"\b(?:without|no|free of|ignore) (?:any )?(?:restrictions|filters|limitations|safety|censorship|content polic(?:y|ies))\b",
    ),
    (
        "disable_safety",
        0.45,
        ("safety", "guardrail", "filter", "moderation", "polic"),
        r"\b(?:disable|turn off|bypass|circumvent)\b.{0,20}\b(?:safety|guardrails?|filters?|moderation|content polic(?:y|ies))\b",
    ),
    (
        "addressed_to_model",
        0.5,
        ("ai ", "ai\n", "ais ", "assistant", "model", "llm", "chatbot"),
        r"\b(?:ai|assistant|language model|llm|chatbot)s? (?:reading this|must|should now|is instructed)\b",
    ),
    (
        "exfiltration",
        0.6,
        ("http", "www.", "@"),
        r"\b(?:send|post|forward|exfiltrate|upload)\b.{0,40}\b(?:conversation|chat history|api keys?|credentials|"
        r"secrets?|passwords?)\b.{0,40}\b(?:to|at)\b.{0,20}(?:https?://|www\.|@)",
    ),
)
# Chat-template markers mean something only at a line start, so this rule sees the unflattened text.
ROLE_MARKERS = (
    "role_markers",
    0.5,
    ("<|", "[inst]", "<<sys>>", "system", "instruction"),
    r"^\s*(?:#{2,} ?(?:system|instruction)\b|system\s*:)",
)
# Template tokens count anywhere; a substring test finds them faster than the regex would.
_ROLE_TOKENS = ("<|im_start|>", "<|system|>", "[inst]", "<<sys>>")
_ROLE_LINE = re.compile(ROLE_MARKERS[3], re.MULTILINE)


def _fast_start(rx: str) -> str:
    """The same pattern with its leading \\b moved behind the first letter of each alternative:
    `\\b(?:ignore|skip)` becomes `(?:i(?<=\\bi)gnore|s(?<=\\bs)kip)`. The regex engine then scans
    for those first letters in C instead of trying every position, about twice as fast on long text."""
    if not rx.startswith(r"\b"):
        return rx
    body = rx[2:]
    if body.startswith("(?:"):
        end = body.index(")")
        alternatives = body[3:end].split("|")
        if not all(re.fullmatch(r"[a-z ]+", a) for a in alternatives):
            return rx
        return "(?:" + "|".join(f"{a[0]}(?<=\\b{a[0]}){a[1:]}" for a in alternatives) + ")" + body[end + 1 :]
    return f"{body[0]}(?<=\\b{body[0]}){body[1:]}" if body[:1].isalpha() else rx


_FLAT = tuple((name, weight, re.compile(_fast_start(rx))) for name, weight, _, rx in RULES)
_ANCHORS: dict[str, set[int]] = {}
for _i, (_name, _weight, _keys, _rx) in enumerate((*RULES, ROLE_MARKERS)):
    for _key in _keys:
        _ANCHORS.setdefault(_key, set()).add(_i)
_AUTOMATON = ahocorasick_rs.AhoCorasick(list(_ANCHORS))


def normalize(text: str) -> str:
    """Lower-cased, invisible characters removed; NFKC folds full-width and styled letters;
    look-alike letters, digits inside words and spaced-out letters are undone (injection_model)."""
    return _normalize_deep(text)


@dataclass(frozen=True)
class InjectionVerdict:
    score: float
    rules: tuple[str, ...]


def score_injection(text: str, folded: str | None = None) -> InjectionVerdict:
    """The patterns' verdict on `text` (`folded`: its normalize(), when the caller has it already)."""
    lined = normalize(text) if folded is None else folded
    candidates: set[int] = set()
    for anchor in set(_AUTOMATON.find_matches_as_strings(lined, overlapping=True)):
        candidates |= _ANCHORS[anchor]
    if not candidates:
        return InjectionVerdict(0.0, ())
    # Collapsed whitespace keeps "IGNORE   previous\ninstructions" from slipping past.
    flat = " ".join(lined.split())
    fired: list[str] = []
    remaining = 1.0
    for index in sorted(candidates):
        if index < len(_FLAT):
            name, weight, rx = _FLAT[index]
            hit = rx.search(flat) is not None
        else:
            name, weight = ROLE_MARKERS[0], ROLE_MARKERS[1]
            hit = any(t in lined for t in _ROLE_TOKENS) or _ROLE_LINE.search(lined) is not None
        if hit:
            fired.append(name)
            remaining *= 1.0 - weight
    return InjectionVerdict(round(1.0 - remaining, 4), tuple(fired))


@dataclass(frozen=True)
class Detection:
    """One text's injection verdict: the score, the detector that gave it, and what fired
    (rule or cue names, never the text)."""

    score: float
    detector: str
    signals: tuple[str, ...]


def detect(
    text: str,
    detector: Detector = "both",
    patterns_scorer: Callable[[str, str], InjectionVerdict] | None = None,
) -> Detection:
    """The patterns, the learned model, or both (the higher score wins and names its detector).
    The text is normalized once for both."""
    folded = normalize(text)
    patterns = (patterns_scorer or score_injection)(text, folded) if detector != "learned" else None
    if detector == "patterns":
        assert patterns is not None
        return Detection(patterns.score, "patterns", patterns.rules)
    learned = default_model().score(text, folded)
    if patterns is not None and patterns.score >= learned.score:
        return Detection(patterns.score, "patterns", patterns.rules)
    return Detection(round(learned.score, 4), "learned", learned.cues)

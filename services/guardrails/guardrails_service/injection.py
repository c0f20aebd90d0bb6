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
    r"(?:<\|im_start\|>|<\|system\|>|\[inst\]|<<sys>>|^\s*#{2,} ?(?:system|instruction)\b|^\s*system\s*:)",
)
_FLAT = tuple((name, weight, re.compile(rx)) for name, weight, _, rx in RULES)
_LINED = ((ROLE_MARKERS[0], ROLE_MARKERS[1], re.compile(ROLE_MARKERS[3], re.MULTILINE)),)
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


def score_injection(text: str) -> InjectionVerdict:
    lined = normalize(text)
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
        name, weight, rx = _FLAT[index] if index < len(_FLAT) else _LINED[0]
        if rx.search(lined if index >= len(_FLAT) else flat):
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
    text: str, detector: Detector = "both", patterns_scorer: Callable[[str], InjectionVerdict] | None = None
) -> Detection:
    """The patterns, the learned model, or both (the higher score wins and names its detector)."""
    patterns = (patterns_scorer or score_injection)(text) if detector != "learned" else None
    if detector == "patterns":
        assert patterns is not None
        return Detection(patterns.score, "patterns", patterns.rules)
    learned = default_model().score(text)
    if patterns is not None and patterns.score >= learned.score:
        return Detection(patterns.score, "patterns", patterns.rules)
    return Detection(round(learned.score, 4), "learned", learned.cues)

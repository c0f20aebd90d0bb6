"""The learned injection detector: a linear model over word n-grams and order-independent cues.

Runs in the guardrails process on CPU in pure Python: one pass to normalize and tokenize, one
dictionary lookup per unigram and bigram, and prefix sums to score every window. The weights are a
file in this package (`injection_model.json.gz`), trained from the committed evaluation data by
`make train-guardrails` (services/guardrails/eval/train.py); nothing is downloaded.

Long texts are scored window by window (WINDOW tokens, half overlapping) and the highest window
wins, so a jailbreak inside a long document is not diluted away by the ordinary text around it.
The training windows are cut the same way (`windows()`), so the model is fitted on what it scores.
"""

import gzip
import json
import math
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import accumulate, repeat

import ahocorasick_rs

WINDOW = 64
STRIDE = WINDOW // 2
# A window's n-gram sum is divided by sqrt(max(its length, MIN_NORM)): a few words do not swing
# the score as far as a full window can.
MIN_NORM = 16
# Tokens beyond this are not scored (64 KB of input is about 12,000 tokens; the size check caps it).
MAX_TOKENS = 20_000

# Zero-width and direction characters, dropped (a regex: str.translate with a dict costs ~50 ns a
# character on non-ASCII text).
_INVISIBLE = re.compile(
    "[\u200b\u200c\u200d\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u00ad\u180e]"
)
# Latin look-alikes from Cyrillic and Greek that NFKC leaves alone ("іgnоrе" with Cyrillic і, о, е),
# mapped only inside words that mix them with Latin letters: Russian or Greek text stays as it is.
_CONFUSABLE = str.maketrans("асеіјорхуѕԁԛԝквмнтαβεικνορτυχ", "aceijopxysdqwkbmhtabeiknoptux")
_LETTERS = re.compile(r"[^\W\d_]+")
# Text with none of them (most non-ASCII text: accents, CJK, emoji) skips the word-by-word pass.
_ANY_CONFUSABLE = re.compile("[асеіјорхуѕԁԛԝквмнтαβεικνορτυχ]")
# Digits and symbols standing in for letters, undone only inside words that also hold letters
# ("1gn0re", "pr3vious"), so numbers stay numbers.
_LEET = str.maketrans("013457@$", "oieastas")
_LEETABLE = re.compile(r"\b(?=\w*[a-z])(?=\w*[0-9])[a-z0-9]+\b")
# Such a word has a letter next to a digit; text without one (plain numbers) skips _LEETABLE.
_LEET_HINT = re.compile(r"[a-z][0-9]|[0-9][a-z]")
# "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e": five or more single letters joined into one word.
_SPACED = re.compile(r"\b(?:[a-z][ .\-_*]){4,}[a-z]\b")
# Every such run holds a separator, a letter, a separator, a letter, a separator (its second and
# third letters): a scan for that is several times cheaper than _SPACED on ordinary prose.
_SPACED_HINT = re.compile(r"[ .\-_*][a-z][ .\-_*][a-z][ .\-_*]")
_SPACER = re.compile(r"[ .\-_*]")
# Words, numbers, and runs of two or more symbols: optimized adversarial suffixes are full of
# them ("describing.\\ + similarlyNow", "](Me giving**ONE"), ordinary prose has few.
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[^\w\s]{2,}")


def _unconfuse(m: re.Match[str]) -> str:
    word = m.group()
    if word.isascii() or not any("a" <= c <= "z" for c in word):
        return word
    return word.translate(_CONFUSABLE)


def normalize(text: str) -> str:
    """Folded for matching: NFKC, case-folded, invisible characters dropped, look-alike letters
    mapped to Latin, digits inside words read as letters, and spaced-out letters joined."""
    if text.isascii():
        folded = text.lower()
    else:
        folded = unicodedata.normalize("NFKC", text)
        if _INVISIBLE.search(folded):
            folded = _INVISIBLE.sub("", folded)
        folded = folded.casefold()
        if _ANY_CONFUSABLE.search(folded):
            folded = _LETTERS.sub(_unconfuse, folded)
    if _LEET_HINT.search(folded):
        folded = _LEETABLE.sub(lambda m: m.group().translate(_LEET), folded)
    if _SPACED_HINT.search(folded) and _SPACED.search(folded):
        folded = _SPACED.sub(lambda m: _SPACER.sub("", m.group()), folded)
    return folded


def tokens(text: str, folded: str | None = None) -> list[str]:
    """Tokens of the normalized text (`folded`, when the caller has it already)."""
    return _TOKEN.findall(normalize(text) if folded is None else folded)[:MAX_TOKENS]


# ---- order-independent cues --------------------------------------------------------------------
# Each cue fires when words of two (or three) families occur within a few tokens of each other, in
# any order: "ignore ... instructions" and "instructions ... ignore" alike, "no restrictions" and
# "restrictions: none" alike.
_FAMILIES: dict[str, frozenset[str]] = {
    "override": frozenset(
        "ignore ignoring ignored disregard disregarding forget forgetting override overriding bypass "
        "abandon discard neglect skip drop dismiss".split()
    ),
    "directive": frozenset(
        "instruction instructions rules rule guidelines guideline prompt prompts directives directive "
        "programming restrictions constraints policies policy filters training orders commands "
        "context tasks task".split()
    ),
    "prior": frozenset(
        "previous prior above earlier preceding original initial before old former system".split()
    ),
    "limits": frozenset(
        "restrictions restriction restricted limitations limits limit filters filter filtered censorship "
        "censor censored ethics ethical morals moral morality guidelines policies boundaries safeguards "
        "rules laws principles values".split()
    ),
    "negation": frozenset(
        "no not without never free unbound none zero beyond unrestricted unfiltered uncensored unlimited "
        "amoral unethical immoral lawless".split()
    ),
    "persona": frozenset(
        "pretend act acting roleplay role character persona simulate simulating embody impersonate "
        "become personality".split()
    ),
    "mode": frozenset("mode enabled jailbreak jailbroken unlocked developer dan".split()),
    "reveal": frozenset("reveal show print repeat output leak display tell disclose spell".split()),
    "secret": frozenset("system secret password prompt instructions key hidden confidential initial".split()),
    "refuse": frozenset(
        "refuse refusal decline deny apologize apologise sorry warning warnings disclaimer disclaimers".split()
    ),
    "always": frozenset("never always must will cannot can't won't".split()),
    "fiction": frozenset(
        "fictional fiction hypothetical hypothetically imaginary imagine imagined scenario story novel "
        "screenplay script movie film simulation simulated theoretical fantasy dystopian roleplay".split()
    ),
    "disclaim": frozenset(
        "purely solely strictly educational academic research purposes endorsement promote "
        "construed implemented".split()
    ),
    "harm": frozenset(
        "ransomware malware virus keylogger exploit exploits hack hacking steal stealing fraud scam scams "
        "weapon weapons bomb explosive explosives poison poisoning drugs meth cocaine heroin violence "
        "violent kill killing murder suicide vomiting misinformation disinformation hoax "
        "propaganda extremist terrorist terrorism racist harass harassment blackmail extort extortion "
        "launder laundering counterfeit smuggle smuggling trafficking illegal illegally detection evade "
        "evading bypass manipulate manipulation defamatory defame cheat cheating phishing torture abuse "
        "exploitation embezzle embezzlement bribe bribery stalk stalking doxx spyware botnet ddos "
        "backdoor rootkit trojan piracy firearm firearms ammunition grenade sarin anthrax ricin lethal "
        "overdose fentanyl narcotics assault rape genocide slavery slur slurs hateful harassing bully "
        "bullying threaten kidnap kidnapping hostage arson vandalism shoplift shoplifting burglary "
        "robbery theft forgery defraud ponzi deceive deceptive mislead misleading".split()
    ),
}
# (name, families, span in tokens): the families must all occur within `span` tokens.
CUES: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("cue:override_directive", ("override", "directive"), 4),
    ("cue:override_prior", ("override", "prior"), 3),
    ("cue:negation_limits", ("negation", "limits"), 4),
    ("cue:persona_limits", ("persona", "limits"), 40),
    ("cue:persona_negation_limits", ("persona", "negation", "limits"), 40),
    ("cue:mode_persona", ("mode", "persona"), 20),
    ("cue:reveal_secret", ("reveal", "secret"), 6),
    ("cue:refuse_always", ("refuse", "always"), 6),
    ("cue:fiction_harm", ("fiction", "harm"), 40),
    ("cue:disclaim_harm", ("disclaim", "harm"), 60),
    ("cue:persona_harm", ("persona", "harm"), 40),
)
_WORD_FAMILIES: dict[str, tuple[str, ...]] = {}
for _fam, _words in _FAMILIES.items():
    for _w in _words:
        _WORD_FAMILIES[_w] = (*_WORD_FAMILIES.get(_w, ()), _fam)
# For each family, the cues it takes part in: a word is checked against those only.
_CUES_OF: dict[str, tuple[tuple[str, tuple[str, ...], int], ...]] = {
    fam: tuple(c for c in CUES if fam in c[1]) for fam in _FAMILIES
}
# For each family word: its families, and the cues any of them takes part in (one lookup per token).
_WORD_CUES: dict[str, tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...], int], ...]]] = {
    word: (fams, tuple(dict.fromkeys(c for fam in fams for c in _CUES_OF[fam])))
    for word, fams in _WORD_FAMILIES.items()
}
_FAR = -(10**9)
# Phrases that name jailbreak machinery outright, matched on the normalized text.
_PHRASES = re.compile(
    r"stay in character|break(?:ing)? character|from now on|two (?:different |separate )?(?:responses|ways|answers)"
    r"|do anything now|(?:developer|god|evil|opposite|jailbreak|unrestricted|dan) mode"
    r"|as an ai language model|openai(?:'s)? (?:content )?polic|content polic(?:y|ies)"
    r"|ignore all the instructions|you are (?:now |going to be )?(?:free|no longer|unrestricted|unfiltered)"
    r"|cease to exist|tokens? (?:will be )?deducted|without any (?:moral|ethical)|hypothetical response"
)
# A literal that every _PHRASES match contains, one per alternative: a single Aho-Corasick pass
# finds where any is, and the (slower) alternation runs only around those places. No phrase is
# longer than _PHRASE_REACH characters, and the pattern has no anchors, so a slice that wide on
# each side of a hint holds every match that contains it.
_PHRASE_REACH = 40
_PHRASE_HINTS = ahocorasick_rs.AhoCorasick(
    [
        "character", "from now on", "two ", "anything now", " mode", "language model", "polic",
        "ignore all the", "you are ", "cease to exist", "deducted", "without any", "hypothetical response",
    ]
)  # fmt: skip


# Optimized adversarial suffixes (GCG and its kin) are gibberish that prose, code and tables
# rarely are: words glued with a capital inside ("similarlyNow", "ZEHelperPhone"), clusters of
# three or more mixed symbols ("]).]]", "\\({\\"), letters glued by symbols other than ordinary
# punctuation ("ur@silence", "x}Now").
# Markdown and code furniture ("```", "|---|", "...", "==>") is not counted. Counted on the text as
# written (case matters), in buckets: 1, 2-3, 4-7, 8 or more.
_CAMEL_JOIN = re.compile(r"(?<![a-z])[a-z]{2,}+[A-Z]+[a-z]*")
_SYMBOL_CLUSTER = re.compile(r"[^\w\s]{3,}")
_GLUED = re.compile(r"[A-Za-z][^\w\s'.,()\[\]/:-]+[A-Za-z]")
_FURNITURE = frozenset("|-:+=*#~`.<>()")
# Code and tables are full of symbols by nature: fenced blocks, table rows and indented lines are
# left out before clusters are counted, and so is inline `code`.
_STRUCTURED = re.compile(r"```[\s\S]*?(?:```|\Z)|`[^`\n]*`|^[ \t]*\|.*$|^(?: {4}|\t).*$", re.MULTILINE)


def gibberish_cues(text: str) -> list[str]:
    """Text-level cues of machine-made suffixes, from the raw text."""
    prose = _STRUCTURED.sub(" ", text) if ("`" in text or "|" in text or "\n" in text) else text
    counts = {
        "camel_joins": len(_CAMEL_JOIN.findall(text)),
        "symbol_clusters": sum(
            1 for c in _SYMBOL_CLUSTER.findall(prose) if len(set(c)) > 1 and not _FURNITURE.issuperset(c)
        ),
        "glued": len(_GLUED.findall(text)),
    }
    return [f"cue:{name}_{min(8, 1 << (n.bit_length() - 1))}" for name, n in counts.items() if n]


def cues(toks: Sequence[str], folded: str, text: str) -> list[str]:
    """The cue features present in a token sequence (order-independent), its folded text and the
    text as written."""
    last: dict[str, int] = {}
    fired: set[str] = set()
    of_word = _WORD_CUES
    # Most tokens belong to no family: one comprehension finds the few that do.
    for i, (fams, candidates) in [(i, of_word[tok]) for i, tok in enumerate(toks) if tok in of_word]:
        for fam in fams:
            last[fam] = i
        for name, need, span in candidates:
            if name in fired:
                continue
            for fam in need:
                if i - last.get(fam, _FAR) > span:
                    break
            else:
                fired.add(name)
    found = {
        m.group()
        for _, start, end in _PHRASE_HINTS.find_matches_as_indexes(folded)
        for m in _PHRASES.finditer(folded[max(0, start - _PHRASE_REACH) : end + _PHRASE_REACH])
    }
    phrases = [f"phrase:{p.split()[0]}_{p.split()[-1]}" for p in sorted(found)]
    gibberish = gibberish_cues(text)
    # A harmful request with a machine-made suffix after it is the shape GCG-style attacks take.
    harm_suffix = ["cue:harm_gibberish"] if gibberish and "harm" in last else []
    return sorted(fired) + phrases + gibberish + harm_suffix


def windows(n: int) -> Iterator[tuple[int, int]]:
    """Token ranges scored for a text of n tokens: one range when it is short, else overlapping
    WINDOW-token ranges, the last one flush with the end."""
    if n <= WINDOW:
        yield 0, n
        return
    start = 0
    while start + WINDOW < n:
        yield start, start + WINDOW
        start += STRIDE
    yield n - WINDOW, n


def window_features(toks: Sequence[str], start: int, end: int) -> list[str]:
    """The n-gram features of one window (the training side; scoring sums the same weights)."""
    out = list(toks[start:end])
    out.extend(f"{toks[i]} {toks[i + 1]}" for i in range(start, min(end, len(toks) - 1)))
    return out


@dataclass(frozen=True)
class ModelVerdict:
    score: float
    cues: tuple[str, ...]


class InjectionModel:
    def __init__(self, weights: dict[str, float], bias: float, version: str) -> None:
        self.weights = weights
        self.bias = bias
        self.version = version

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> "InjectionModel":
        weights = doc["weights"]
        assert isinstance(weights, dict)
        return cls({str(k): float(v) for k, v in weights.items()}, float(doc["bias"]), str(doc["version"]))  # type: ignore[arg-type]

    def score(self, text: str, folded: str | None = None) -> ModelVerdict:
        """The verdict on `text` (`folded`: its normalize(), when the caller has it already)."""
        folded = normalize(text) if folded is None else folded
        toks = tokens(text, folded)
        if not toks:
            return ModelVerdict(0.0, ())
        get = self.weights.get
        n = len(toks)
        # Token i contributes its weight and that of the bigram it starts; prefix sums give each
        # window's total in O(1), so overlapping windows cost nothing extra. map() and accumulate()
        # keep the per-token work in C.
        bigrams = [f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False)]
        bigrams.append("")
        zeros = repeat(0.0)
        contrib = map(float.__add__, map(get, toks, zeros), map(get, bigrams, zeros))
        prefix = list(accumulate(contrib, initial=0.0))
        found = cues(toks, folded, text)
        text_level = self.bias + sum(get(c, 0.0) for c in found)
        best = -math.inf
        for start, end in windows(n):
            # Its unigrams and the bigrams they start (as window_features counts them).
            total = prefix[end] - prefix[start]
            best = max(best, total / math.sqrt(max(end - start, MIN_NORM)))
        logit = text_level + best
        return ModelVerdict(1.0 / (1.0 + math.exp(-logit)), tuple(found))


@cache
def default_model() -> InjectionModel:
    raw = resources.files(__package__).joinpath("injection_model.json.gz").read_bytes()
    return InjectionModel.from_json(json.loads(gzip.decompress(raw)))

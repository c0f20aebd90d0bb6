"""Splitting a document into overlapping chunks that fit the embedding model's window.

Sizes are measured with a caller-supplied token counter. The service passes the
embedding model's own WordPiece tokenizer, so a chunk never overflows the model's
window and silently loses its tail; `approx_tokens` (one token per punctuation mark and
per started six characters of a word, which errs high for English) serves tools and
tests that have no model loaded. Both are additive across whitespace, so the sum of
the pieces' counts is the count of the joined chunk.

A chunk that overflows is cut before its last heading if it has one (a Markdown or
HTML section thus opens its own chunk), else at the strongest boundary that leaves it
at least half full: between paragraphs, then between list items, then after a
sentence, and only as a last resort between words. The next chunk starts with the
last sentences of the previous one (up to the overlap budget) so a fact split across
the cut stays findable, except after a heading cut where the new section stands alone.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

TokenCounter = Callable[[str], int]

# Strength of the boundary before a unit; higher is a better place to cut.
WORD, SENTENCE, LINE, PARAGRAPH, HEADING = range(5)

_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")
_HEADING_LINE = re.compile(r"#{1,6}\s+\S")
_LIST_ITEM = re.compile(r"(?:[-*+•]|\d{1,3}[.)])\s+\S")
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")
_SENTENCE_PUNCT = (".", "!", "?", "…", "。", "！", "？", ":", ";")
_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def approx_tokens(text: str) -> int:
    """Token count without a tokenizer; long words (URLs, base64, CJK runs) count several."""
    return sum((len(piece) + 5) // 6 for piece in _WORDISH.findall(text))


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    tokens: int
    boundary: int
    separator: str


def chunk_text(
    text: str,
    *,
    max_tokens: int,
    overlap_tokens: int,
    count_tokens: TokenCounter = approx_tokens,
) -> list[str]:
    """Chunks of `text`, each at most `max_tokens` by `count_tokens`, in document order."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be in [0, max_tokens)")
    # Windows and old Mac line endings would hide paragraph breaks from the splitter.
    units = _units(text.replace("\r\n", "\n").replace("\r", "\n"), max_tokens, count_tokens)
    return [_join(chunk) for chunk in _pack(units, max_tokens, overlap_tokens)]


def _units(text: str, max_tokens: int, count: TokenCounter) -> list[_Unit]:
    units: list[_Unit] = []
    after_heading = False
    for p_index, paragraph in enumerate(_BLANK_LINES.split(text.strip())):
        previous_line = ""
        for l_index, line in enumerate(paragraph.split("\n")):
            stripped = line.strip()
            if not stripped:
                continue
            is_heading = bool(_HEADING_LINE.match(stripped))
            if is_heading:
                boundary = HEADING
            elif after_heading:
                # Never leave a heading alone at the end of a chunk.
                boundary = WORD
            elif l_index == 0:
                boundary = PARAGRAPH
            elif _LIST_ITEM.match(stripped):
                boundary = LINE
            elif previous_line.endswith(_SENTENCE_PUNCT):
                boundary = SENTENCE
            else:
                boundary = WORD  # a hard-wrapped line inside a sentence
            separator = "\n\n" if l_index == 0 and p_index > 0 else "\n"
            # Keep indentation of code and nested lists; only trailing space is noise.
            body = line.rstrip() if line.startswith((" ", "\t")) and not is_heading else stripped
            for s_index, sentence in enumerate(_SENTENCE_END.split(body)):
                if not sentence:
                    continue
                first = s_index == 0
                units.extend(
                    _fit(
                        sentence,
                        boundary if first else SENTENCE,
                        separator if first else " ",
                        max_tokens,
                        count,
                    )
                )
            after_heading = is_heading
            previous_line = stripped
    return units


def _fit(text: str, boundary: int, separator: str, max_tokens: int, count: TokenCounter) -> list[_Unit]:
    """`text` as one unit, or as word windows when it alone exceeds the budget."""
    tokens = count(text)
    if tokens <= max_tokens:
        return [_Unit(text, tokens, boundary, separator)]
    pieces: list[_Unit] = []
    window: list[str] = []
    window_tokens = 0
    for word in text.split():
        for part in _split_word(word, max_tokens, count):
            part_tokens = count(part)
            if window and window_tokens + part_tokens > max_tokens:
                pieces.append(_Unit(" ".join(window), window_tokens, WORD, " "))
                window, window_tokens = [], 0
            window.append(part)
            window_tokens += part_tokens
    if window:
        pieces.append(_Unit(" ".join(window), window_tokens, WORD, " "))
    return [_Unit(pieces[0].text, pieces[0].tokens, boundary, separator), *pieces[1:]]


def _split_word(word: str, max_tokens: int, count: TokenCounter) -> list[str]:
    """A single over-long word (a URL, base64, a CJK run) cut into pieces that fit."""
    tokens = count(word)
    if tokens <= max_tokens:
        return [word]
    size = max(1, len(word) * max_tokens // tokens)
    while size > 1 and any(count(word[i : i + size]) > max_tokens for i in range(0, len(word), size)):
        size //= 2
    return [word[i : i + size] for i in range(0, len(word), size)]


def _pack(units: list[_Unit], max_tokens: int, overlap_tokens: int) -> list[list[_Unit]]:
    chunks: list[list[_Unit]] = []
    current: list[_Unit] = []
    carried = 0  # current[:carried] repeats the end of the previous chunk
    for unit in units:
        while current and _total(current) + unit.tokens > max_tokens:
            cut = _best_cut(current, unit, carried, max_tokens)
            emitted, rest = current[:cut], current[cut:]
            chunks.append(emitted)
            boundary = rest[0].boundary if rest else unit.boundary
            overlap = [] if boundary == HEADING else _tail(emitted[carried:], overlap_tokens)
            # The overlap is context, not content: drop it first when space runs out.
            while overlap and _total(overlap) + _total(rest) + unit.tokens > max_tokens:
                overlap.pop(0)
            current, carried = overlap + rest, len(overlap)
        current.append(unit)
    if len(current) > carried:
        chunks.append(current)
    return chunks


def _best_cut(current: list[_Unit], incoming: _Unit, carried: int, max_tokens: int) -> int:
    """Index to cut `current` at: the strongest boundary leaving the chunk at least half full."""
    best, best_strength = len(current), -1
    filled = _total(current[:carried])
    for index in range(carried + 1, len(current) + 1):
        filled += current[index - 1].tokens
        strength = current[index].boundary if index < len(current) else incoming.boundary
        # A section ends its chunk however short it is, so a heading never lands mid-chunk;
        # weaker cuts must leave the chunk at least half full.
        eligible = filled * 2 >= max_tokens or (strength == HEADING and filled > 0)
        # `>=` so that among equally strong boundaries the latest, fullest cut wins.
        if eligible and strength >= best_strength:
            best, best_strength = index, strength
    return best


def _tail(units: list[_Unit], budget: int) -> list[_Unit]:
    tail: list[_Unit] = []
    used = 0
    for unit in reversed(units):
        if used + unit.tokens > budget:
            break
        tail.insert(0, unit)
        used += unit.tokens
    return tail


def _total(units: list[_Unit]) -> int:
    return sum(u.tokens for u in units)


def _join(units: list[_Unit]) -> str:
    parts = [units[0].text]
    for unit in units[1:]:
        parts.append(unit.separator)
        parts.append(unit.text)
    return "".join(parts)

"""Token estimate without a tokenizer: cheap enough for every request."""

_PUNCTUATION = ".,;:!?()[]{}<>\"'`/\\|=+-*&^%$#@~"


def approx_tokens(text: str) -> int:
    # English averages about four bytes per token across common BPE vocabularies; counting words
    # and punctuation as well keeps dense code and punctuation-heavy text from slipping under.
    words = len(text.split()) + sum(text.count(ch) for ch in _PUNCTUATION)
    return max(words, (len(text.encode()) + 3) // 4)

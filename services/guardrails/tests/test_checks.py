from guardrails_service.checks import InputChecker, approx_tokens


def checker(**kw):
    defaults = dict(max_bytes=1000, max_tokens=100, deny_terms=["project x", "forbidden"])
    return InputChecker(**{**defaults, **kw})


def test_small_clean_input_is_allowed():
    report = checker().check(["hello there", "what is pgvector?"])
    assert report.allowed
    assert report.input_bytes == len("hello there\nwhat is pgvector?")
    assert report.approx_tokens >= 6


def test_oversized_input_is_blocked_by_bytes():
    report = checker(max_bytes=10).check(["x" * 11])
    assert not report.allowed
    assert [f.code for f in report.findings] == ["input_too_large"]


def test_token_limit_counts_words_and_punctuation():
    text = "a, " * 60  # 120 word-ish tokens in only 180 bytes
    report = checker(max_tokens=100).check([text])
    assert [f.code for f in report.findings] == ["input_too_many_tokens"]


def test_deny_terms_match_whole_words_case_insensitively():
    assert [f.code for f in checker().check(["tell me about PROJECT X now"]).findings] == ["denied_term"]
    assert checker().check(["unforbiddenness is fine"]).allowed


def test_denied_term_is_not_echoed_back():
    report = checker().check(["forbidden"])
    assert "forbidden" not in report.findings[0].message


def test_multibyte_text_counts_bytes_not_characters():
    assert checker(max_bytes=5).check(["ééé"]).findings[0].code == "input_too_large"
    assert approx_tokens("日本語のテキスト") >= 4

"""The extractive summary, what each log policy stores, and redaction of stored text."""

from types import SimpleNamespace

from gateway_service.edge.keys import policy_of
from gateway_service.edge.request_log import RequestEntry, captured_conversation, row_of, stored_text
from gateway_service.edge.summaries import MAX_SUMMARY_CHARS, clean_summary, extractive_summary

EMAIL = "jane.doe@example.com"
API_KEY = "sk-proj-abcdefghijklmnop1234"
BEARER = "Bearer abcdef.ghijkl.mnopqr"
LLMS_KEY = "llms_0123456789ab_" + "x" * 43


def entry(policy: str, question: str, answer: str, **extra) -> RequestEntry:
    messages, kept = captured_conversation(
        policy,
        [SimpleNamespace(role="system", content="Be brief."), SimpleNamespace(role="user", content=question)],
        answer,
    )
    return RequestEntry(
        "org", "key", "", "m", 1, 2, 0.0, "req-1", log_policy=policy, messages=messages, answer=kept, **extra
    )


def test_extractive_summary_takes_the_opening_of_question_and_answer():
    summary = extractive_summary(
        "What is the capital of France? I need it for a quiz. Thanks a lot.",
        "The capital of France is Paris. It has been the capital since 987.",
    )
    assert summary.startswith("Q: What is the capital of France? I need it for a quiz.")
    assert summary.endswith("A: The capital of France is Paris.")
    assert "987" not in summary


def test_extractive_summary_is_bounded_and_single_line():
    summary = extractive_summary("word " * 500, "answer with " + "long " * 500)
    assert len(summary) <= MAX_SUMMARY_CHARS
    assert "\n" not in summary and summary.endswith("…") and "A: answer with long" in summary
    # A blank line ends the first sentence of the answer.
    assert extractive_summary("Hi.", "First line\n\nsecond part") == "Q: Hi. A: First line"
    assert extractive_summary("", "") == ""
    assert extractive_summary("Only a question?", "") == "Q: Only a question?"


def test_summaries_never_carry_emails_keys_or_tokens():
    question = f"Mail {EMAIL} my key {API_KEY}. Also {BEARER} and {LLMS_KEY}."
    for text in (
        clean_summary(question),
        stored_text(entry("summary", question, f"Sent to {EMAIL}."), None)[0],
    ):
        assert text
        for secret in (EMAIL, API_KEY, "abcdef.ghijkl.mnopqr", LLMS_KEY):
            assert secret not in text, text


def test_a_model_summary_is_redacted_too():
    summary, conversation = stored_text(entry("summary", "hi", "hello"), f"User {EMAIL} shared {API_KEY}")
    assert summary is not None and EMAIL not in summary and API_KEY not in summary
    assert conversation is None


def test_full_policy_keeps_messages_and_emails_but_masks_secrets():
    question = f"Write to {EMAIL} using {API_KEY} and {BEARER}."
    summary, conversation = stored_text(entry("full", question, f"Done; {LLMS_KEY} is yours."), None)
    assert conversation is not None
    text = str(conversation)
    assert EMAIL in text and "Be brief." in text
    for secret in (API_KEY, "abcdef.ghijkl.mnopqr", LLMS_KEY):
        assert secret not in text
    assert summary is not None and EMAIL not in summary


def test_metadata_and_none_policies_keep_no_text():
    for policy in ("metadata", "none"):
        e = entry(policy, f"secret plans {EMAIL}", "the answer")
        assert e.messages == () and e.answer == ""
        row = row_of(e, "a model summary")
        assert row[-2] is None and row[-1] is None


def test_summary_policy_captures_only_the_last_user_turn_bounded():
    e = entry("summary", "q" * 10_000, "a" * 10_000)
    assert e.messages == (("user", "q" * 2000),) and len(e.answer) == 2000


def test_the_org_decides_full_and_a_key_may_only_narrow():
    assert policy_of({}, {}).log_policy == "summary"
    assert policy_of({}, {"log_policy": "full"}).log_policy == "full"
    assert policy_of({"log_policy": "full"}, {}).log_policy == "summary"
    assert policy_of({"log_policy": "metadata"}, {"log_policy": "full"}).log_policy == "metadata"
    assert policy_of({"log_policy": "none"}, {"log_policy": "summary"}).log_policy == "none"

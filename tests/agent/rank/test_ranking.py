import numpy as np
import pytest

from agent.llm.fake import FakeBackend
from agent.rank.verbalizer import LABELS, VerbalizerRanker, build_messages, candidate_line
from agent.types import Candidate, DialogueState
from tests.tiny_lm import tiny_model_and_tokenizer


@pytest.fixture(scope="module")
def local_backend():
    from agent.llm.local import LocalBackend

    model, tokenizer = tiny_model_and_tokenizer()
    return LocalBackend(model=model, tokenizer=tokenizer)


def full_forward_logprobs(backend, messages, labels):
    """Reference: one uncached forward pass over the whole prompt."""
    import torch

    ids = backend._prompt_ids(messages)
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([ids])).logits[0, -1]
    lp = torch.log_softmax(logits, -1)
    return [lp[backend.tokenizer.convert_tokens_to_ids(label)].item() for label in labels]


def test_verbalizer_reads_next_token_logprobs_of_labels(local_backend):
    messages = [{"role": "user", "content": "which letter ? A action B comedy"}]
    got = local_backend.label_logprobs(messages, ["A", "B", "C"])
    assert got == pytest.approx(full_forward_logprobs(local_backend, messages, ["A", "B", "C"]),
                                abs=1e-5)
    assert all(x < 0 for x in got) and len(set(got)) == 3


def test_prefix_cache_gives_the_same_scores_and_is_reused(local_backend, catalog):
    state = DialogueState(liked=(1,))
    lines = [candidate_line(LABELS[k], catalog.get(i), 1, 1) for k, i in enumerate((3, 8, 11))]
    messages = build_messages(state, lines, catalog.items, few_shot=True)
    assert len(messages) == 8  # system + 3 demos (user, assistant) + request
    first = local_backend.label_logprobs(messages, LABELS[:3])
    cached = dict(local_backend._prefixes)
    zero_shot = build_messages(state, lines, catalog.items, few_shot=False)
    local_backend.label_logprobs(zero_shot, LABELS[:3])  # another prefix, kept beside it
    second = local_backend.label_logprobs(messages, LABELS[:3])
    assert all(local_backend._prefixes[k] is v for k, v in cached.items())  # not recomputed
    assert len(local_backend._prefixes) == len(cached) + 1
    reference = full_forward_logprobs(local_backend, messages, LABELS[:3])
    assert first == pytest.approx(reference, abs=1e-4) and second == pytest.approx(first, abs=1e-6)


def test_multi_token_label_is_rejected(local_backend):
    from agent.errors import BackendError

    with pytest.raises(BackendError, match="tokens"):
        local_backend.label_ids(["A."])


def greedy_one_by_one(backend, messages, max_new_tokens):
    """Reference: greedy decoding of one conversation, one full forward pass a token."""
    import torch

    ids = backend._prompt_ids(messages)
    new = []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            token = int(backend.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if token == backend.tokenizer.eos_token_id:
                break
            new.append(token)
    return backend.tokenizer.decode(new, skip_special_tokens=True).strip()


def test_batched_generation_is_each_conversations_own_greedy_text(local_backend):
    """Left padding must not change a row: each text is what that conversation alone
    decodes greedily, whatever the batch's other (longer) prompts."""
    convs = [[{"role": "user", "content": "a"}],
             [{"role": "user", "content": "the movie is"}],
             [{"role": "system", "content": "rank the candidates"},
              {"role": "user", "content": "which letter ? A action B comedy"}]]
    out = local_backend.generate(convs, max_new_tokens=6)
    expected = [greedy_one_by_one(local_backend, c, 6) for c in convs]
    assert out == expected
    assert len(set(expected)) > 1 and all(expected)  # distinct, non-empty texts to compare


def test_streaming_a_batch_yields_the_same_text_as_generating_it(local_backend):
    convs = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "the movie is"}],
             [{"role": "user", "content": "which letter"}]]
    whole = local_backend.generate(convs, max_new_tokens=8)
    pieces = list(local_backend.stream_many(convs, max_new_tokens=8))
    streamed = ["".join(p for k, p in pieces if k == row).strip() for row in range(3)]
    assert streamed == whole and len(pieces) > 3
    assert {k for k, _ in pieces} <= {0, 1, 2}


def cands(*ids):
    return [Candidate(i, 1.0 / (k + 1), ("semantic",)) for k, i in enumerate(ids)]


def test_fusion_lets_a_confident_llm_reorder_but_not_add(catalog):
    # The LLM strongly prefers the third candidate (label C).
    backend = FakeBackend(scorer=lambda m, labels: [-5.0, -5.0, -0.1][: len(labels)])
    ranked = VerbalizerRanker(backend, catalog, n_llm=3, weight=2.0, calibrate=False).rank(
        DialogueState(), cands(3, 8, 11))
    assert [r.item_id for r in ranked] == [11, 3, 8]
    assert {r.item_id for r in ranked} == {3, 8, 11}


def test_fused_scores_are_standardized_retrieval_plus_weighted_llm(catalog):
    """By hand: retrieval scores 1, 1/2, 1/3 standardize to 1.3728, -0.3922, -0.9806;
    label log-probs -5, -5, -0.1 to -0.7071, -0.7071, 1.4142; with weight 2 the fused
    scores are -0.0414, -1.8064, 1.8478. The tail (unseen by the LLM) is scored on the
    head's retrieval z scale (mean 0.6111, sd 0.2833): 0.25 is z -1.2745, above the
    lowest fused score, so it goes just below that one (what the LLM saw stays first)."""
    backend = FakeBackend(scorer=lambda m, labels: [-5.0, -5.0, -0.1][: len(labels)])
    ranked = VerbalizerRanker(backend, catalog, n_llm=3, weight=2.0, calibrate=False).rank(
        DialogueState(), cands(3, 8, 11, 12))
    got = [(r.item_id, r.score, r.retrieval_score, r.llm_score) for r in ranked]
    expected = [(11, 1.8478, 1 / 3, -0.1), (3, -0.0414, 1.0, -5.0), (8, -1.8064, 0.5, -5.0),
                (12, -1.8064, 0.25, None)]
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert got[3][1] < got[2][1]
    for (_, score, retr, llm), (_, e_score, e_retr, e_llm) in zip(got, expected):
        assert score == pytest.approx(e_score, abs=1e-4)
        assert retr == pytest.approx(e_retr)
        assert llm == (None if e_llm is None else pytest.approx(e_llm))


def test_an_unseen_candidate_far_below_keeps_its_retrieval_gap(catalog):
    """Retrieval 1, 1/2, 1/3 then -2: -2 is z = (-2 - 0.6111) / 0.2833 = -9.2175 on the
    head's scale, far below the head, so the tail re-ranker sees the gap (a rank
    position would place it one step down)."""
    backend = FakeBackend(scorer=lambda m, labels: [-5.0, -5.0, -0.1][: len(labels)])
    cs = cands(3, 8, 11) + [Candidate(12, -2.0, ("semantic",)), Candidate(9, -3.0, ("semantic",))]
    ranked = VerbalizerRanker(backend, catalog, n_llm=3, weight=2.0, calibrate=False).rank(
        DialogueState(), cs)
    assert [r.item_id for r in ranked] == [11, 3, 8, 12, 9]
    assert ranked[3].score == pytest.approx(-9.2175, abs=1e-3)
    assert ranked[4].score == pytest.approx(-12.7476, abs=1e-3)


def test_ranking_many_requests_at_once_equals_ranking_each(catalog):
    def scorer(messages, labels):  # depends on the prompt, so a mix-up would show
        text = messages[-1]["content"]
        return [-float((len(text) * (k + 3)) % 7) for k in range(len(labels))]

    ranker = VerbalizerRanker(FakeBackend(scorer=scorer), catalog, n_llm=3, weight=1.0)
    requests = [(DialogueState(liked=(3,)), cands(8, 11, 12, 1)),
                (DialogueState(), []),
                (DialogueState(genres=("Sci-Fi",)), cands(11, 3)),
                (DialogueState(liked=(8,)), cands(12, 1, 3))]
    assert ranker.rank_many(requests) == [ranker.rank(s, c) for s, c in requests]
    assert ranker.rank_many([]) == []


def test_weight_zero_is_pure_retrieval_order(catalog):
    backend = FakeBackend(scorer=lambda m, labels: [-9.0, -1.0, -0.1])
    ranked = VerbalizerRanker(backend, catalog, n_llm=3, weight=0.0).rank(DialogueState(), cands(3, 8, 11))
    assert [r.item_id for r in ranked] == [3, 8, 11]


def test_candidates_beyond_the_llm_window_keep_retrieval_order_below(catalog):
    backend = FakeBackend(scorer=lambda m, labels: list(np.linspace(-3, -1, len(labels))))
    ranked = VerbalizerRanker(backend, catalog, n_llm=2, weight=1.0, calibrate=False).rank(
        DialogueState(), cands(3, 8, 11, 12))
    assert [r.item_id for r in ranked][2:] == [11, 12]
    assert ranked[1].score > ranked[2].score > ranked[3].score
    assert ranked[2].llm_score is None


def test_prompt_carries_evidence_and_constraints(catalog):
    backend = FakeBackend()
    state = DialogueState(liked=(1,), excluded_genres=("Horror",), year_min=1990, year_max=1999)
    VerbalizerRanker(backend, catalog, n_llm=2, few_shot=False).rank(state, cands(3, 8))
    messages = backend.calls[0][1]
    assert len(messages) == 2
    prompt = messages[-1]["content"]
    assert "Liked: Alien\n" in prompt and "Mostly: Action, Horror, Sci-Fi\n" in prompt
    assert "no Horror" in prompt and "released 1990-1999" in prompt
    assert "\nA. Terminator 2: Judgment Day | 90s | Action, Sci-Fi" in prompt


def test_co_watch_evidence_is_shown_only_when_there_is_some(catalog):
    assert candidate_line("B", catalog.get(3), 2, 5).endswith("| co 2/5")
    assert "co " not in candidate_line("B", catalog.get(3), 0, 5)


def test_few_shot_demonstrations_use_the_same_candidate_format(catalog):
    from agent.rank.verbalizer import demo_messages

    demos = demo_messages()
    assert [m["role"] for m in demos] == ["user", "assistant"] * 3
    assert "B. The Lion King | 90s | Animation, Children's | co 2/2" in demos[0]["content"]
    assert demos[1]["content"] == "B"


def test_calibration_removes_a_label_bias_that_ignores_content(catalog):
    def scorer(messages, labels):
        content_free = "A. N/A" in messages[-1]["content"]
        bias = np.array([-0.5, -3.0, -3.0])  # the model likes "A" whatever it is shown
        return list(bias if content_free else bias + np.array([0.0, 0.0, 1.0]))

    backend = FakeBackend(scorer=scorer)
    raw = VerbalizerRanker(backend, catalog, n_llm=3, weight=5.0, calibrate=False)
    assert raw.rank(DialogueState(), cands(3, 8, 11))[0].item_id == 3  # the bias wins
    ranker = VerbalizerRanker(backend, catalog, n_llm=3, weight=5.0)
    ranked = ranker.rank(DialogueState(), cands(3, 8, 11))
    assert ranked[0].item_id == 11  # the content signal wins
    assert ranked[0].llm_score == pytest.approx(1.0)
    n_calls = len(backend.calls)
    ranker.rank(DialogueState(), cands(3, 8, 11))
    assert len(backend.calls) == n_calls + 1  # the prior is computed once, then cached


def test_a_prompt_over_the_token_budget_is_told_more_tersely(catalog):
    """The budget is met by dropping detail in a fixed order (request words, then title
    words, then genres, ...), never by dropping candidates; each step is counted."""
    from agent.rank.verbalizer import DETAILS

    counted = []

    def count(messages):  # one "token" a character: every detail level costs less
        counted.append(sum(len(m["content"]) for m in messages))
        return counted[-1]

    state = DialogueState(liked=(1, 2, 3), query="a long request about " + "space " * 40)
    ids = (3, 8, 11, 4, 5)
    full = VerbalizerRanker(None, catalog, n_llm=5, few_shot=False, max_tokens=None)
    roomy = full.messages(state, cands(*ids))
    budget = count(roomy) - 1
    tight = VerbalizerRanker(None, catalog, n_llm=5, few_shot=False, max_tokens=budget,
                             count_tokens=count)
    shorter = tight.messages(state, cands(*ids))
    assert count(shorter) <= budget < count(roomy)
    assert "space space" in roomy[-1]["content"] and shorter[-1]["content"].count("space") == 8
    for k in range(len(ids)):  # every candidate still there, in order
        assert f"\n{LABELS[k]}. " in shorter[-1]["content"]
    # Nothing fits: the tersest level, not an error.
    tersest = VerbalizerRanker(None, catalog, n_llm=5, few_shot=False, max_tokens=1,
                               count_tokens=count).messages(state, cands(*ids))
    assert "Request" not in tersest[-1]["content"] and len(counted) >= len(DETAILS)


def test_few_shot_asks_about_a_request_exactly_as_zero_shot_does(catalog):
    state = DialogueState(liked=(1, 2), query="something " * 50)
    zero = VerbalizerRanker(None, catalog, n_llm=3, few_shot=False, max_tokens=60)
    few = VerbalizerRanker(None, catalog, n_llm=3, few_shot=True, max_tokens=60)
    z, f = zero.messages(state, cands(3, 8, 11)), few.messages(state, cands(3, 8, 11))
    assert len(f) == len(z) + 6 and f[-1] == z[-1] and f[0] == z[0]


def test_the_local_backend_counts_the_prompt_as_it_feeds_it(local_backend, catalog):
    ranker = VerbalizerRanker(local_backend, catalog, n_llm=3, few_shot=False)
    messages = ranker.messages(DialogueState(liked=(1,)), cands(3, 8, 11))
    assert ranker.tokens(messages) == len(local_backend._prompt_ids(messages))

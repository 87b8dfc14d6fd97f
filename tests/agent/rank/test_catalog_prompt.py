"""The LLM ranking prompt on an imported catalog: written from the schema (each line the
item's own facet values), its demonstrations drawn from the interactions it is given
(never a held-out one), shortened to fit the token budget, and the ranker only ever
reorders the candidates it was given."""

from __future__ import annotations

import pytest

from agent.data.catalog import Catalog
from agent.llm.fake import FakeBackend
from agent.rank.catalog_prompt import COMPACT, catalog_demos, catalog_line, constraints
from agent.rank.verbalizer import VerbalizerRanker
from agent.types import Candidate, DialogueState
from eval.protocols import make_split
from tests.agent.data.test_import import imported_shop


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return Catalog.load(imported_shop(tmp_path_factory.mktemp("catalog-prompt"), n_products=80, users=100, interactions=900))


def _cands(catalog, n):
    ids = sorted(catalog.items, key=lambda i: -catalog.items[i].popularity)[:n]
    return [Candidate(i, 1.0 / (k + 1), ("semantic",)) for k, i in enumerate(ids)]


def test_a_line_is_the_items_own_facet_values_in_schema_order(catalog):
    item = next(iter(catalog.items.values()))
    line = catalog_line("C", item, catalog.schema, 2, 3)
    cells = line.split(" | ")
    assert cells[0].startswith("C. ") and cells[-1] == "co 2/3"
    facts = [f.field for f in catalog.schema.facts]
    assert facts[:2] == ["category", "brand"]
    assert cells[1] == item.attrs["category"] and cells[2] == item.attrs["brand"]
    assert cells[facts.index("price") + 1] == f"{round(item.attrs['price'])}"


def test_the_prompt_names_the_fields_and_the_asked_constraints(catalog):
    state = DialogueState(query="a wool jumper under 90, not Nike",
                          facets=(("category", "jumper"), ("material", "wool")),
                          excluded_facets=(("brand", "Nike"),), bounds=(("price", None, 90.0),))
    assert constraints(state) == "category jumper; material wool; no brand Nike; price ...-90"
    ranker = VerbalizerRanker(FakeBackend(), catalog, n_llm=5, few_shot=False, max_tokens=None)
    messages = ranker.messages(state, _cands(catalog, 5))
    assert "name | category | brand | colour | material | price" in messages[0]["content"]
    assert "film" not in messages[0]["content"] and "decade" not in messages[0]["content"]
    user = messages[-1]["content"]
    assert "Constraints: category jumper; material wool; no brand Nike" in user
    assert "Request: a wool jumper under 90, not Nike" in user
    assert user.count("\n") >= 5 and "E. " in user


def test_a_tight_budget_gives_a_terser_prompt_that_keeps_the_request(catalog):
    state = DialogueState(query="something warm in wool for winter")
    cands = _cands(catalog, 10)
    full = VerbalizerRanker(FakeBackend(), catalog, few_shot=False, max_tokens=None)
    tight = VerbalizerRanker(FakeBackend(), catalog, few_shot=False, max_tokens=150)
    long, short = full.messages(state, cands), tight.messages(state, cands)
    assert full.tokens(short) < full.tokens(long)
    assert "Request: something warm in wool" in short[-1]["content"]
    assert len(COMPACT) == 4


def test_demonstrations_come_only_from_the_interactions_given(catalog):
    split = make_split(catalog)
    train = split.train_catalog
    demos = catalog_demos(train)
    assert len(demos) == 2
    had: dict[int, set[int]] = {}
    for u, i in zip(train.user.tolist(), train.item.tolist()):
        had.setdefault(u, set()).add(i)
    for liked, shown, answer in demos:
        target = shown[answer]
        # one training user had the liked items and the answer (so no held-out item)
        assert any({*liked, target} <= items for items in had.values())
        assert len(shown) == 4 and target not in liked
    assert {a for _, _, a in demos} == {1, 2}  # the answer is not always the same letter
    ranker = VerbalizerRanker(FakeBackend(), train, n_llm=4, few_shot=True)
    messages = ranker.messages(DialogueState(), _cands(train, 4))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user",
                                             "assistant", "user"]


def test_the_ranker_only_reorders_the_candidates_it_was_given(catalog):
    seen = []

    def scorer(messages, labels):
        seen.append(messages)
        if "N/A" in messages[-1]["content"]:  # the content-free prompt: no preference
            return [0.0] * len(labels)
        return [float(k) for k in range(len(labels))]  # prefers the last letter
    ranker = VerbalizerRanker(FakeBackend(scorer), catalog, n_llm=6, weight=5.0)
    cands = _cands(catalog, 8)
    ranked = ranker.rank(DialogueState(query="a scarf"), cands)
    assert sorted(r.item_id for r in ranked) == sorted(c.item_id for c in cands)
    assert ranked[0].item_id == cands[5].item_id  # the LLM's pick, within the 6 it saw
    assert all("N/A" in m[-1]["content"] or "scarf" in m[-1]["content"] for m in seen)
    assert any("N/A" in m[-1]["content"] for m in seen)  # calibrated on the catalog prompt
    assert all(m[0]["content"].startswith("Pick the item ") for m in seen)


def test_fine_tuning_examples_on_a_shop_use_its_prompt_and_facets(catalog):
    """`tailor finetune` (the ranking adapter) on an imported catalog: the prompts are the
    catalog's, a chat example states one of the target's own facet values, and no
    example trains on a held-out item."""
    from eval.protocols import leave_one_out
    from finetune import data as D
    from tests.finetune.test_data import EveryItemRetriever

    calls = []
    examples = D.training_examples(catalog, lambda c: EveryItemRetriever(c, calls), 10, 1,
                                   chat_share=1.0, seed=0, progress=False)
    assert len(examples) > 20
    _, valid, test = leave_one_out(catalog, D.MIN_HISTORY)
    D.assert_no_heldout_leak(examples, valid, test)
    for (_, state), ex in zip(calls, examples):
        assert ex.kind == "chat" and ex.messages[0]["content"].startswith("Pick the item ")
        target = catalog.items[ex.target]
        (field, value), = state.facets
        assert target.value(field) == value and f"a {value}, please" in ex.messages[-1]["content"]

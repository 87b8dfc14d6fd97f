"""Fine-tuning prompts over the learned fusion's candidates (``candidates_from: fusion``)."""

import pytest

from agent.errors import ConfigError
from eval.llm_feature import out_of_fold_heads, sample_cases
from eval.protocols import make_split
from eval.two_stage import TwoStage, train_two_stage
from finetune.config import load_config
from finetune.fusion_data import fusion_examples, user_roles
from tests.eval.test_two_stage import QUIET, cycle_catalog, retriever_for
from tests.agent.retrieve.test_index import client  # noqa: F401  (the Chroma fixture)


def test_fusion_examples_are_honest_and_leave_the_llm_feature_users_alone(client):  # noqa: F811
    split = make_split(cycle_catalog(), n_negatives=3)
    cat = split.train_catalog
    retriever = retriever_for(client, cat)
    fusion, _, examples = train_two_stage(cat, split, retriever, **QUIET,
                                          sequential_for=lambda *a: None)
    system = TwoStage(cat, retriever, fusion)
    system.train_examples = examples
    train, valid = fusion_examples(system, split, 5, 0, reserved_cases=30, log=lambda m: None)
    assert train and valid
    reserved = {examples[k].user for k in sample_cases(examples, 30, 0)}
    train_users, valid_users = {e.user for e in train}, {e.user for e in valid}
    assert not train_users & valid_users and not (train_users | valid_users) & reserved
    test = {c.user: c.target for c in split.test}
    heads = {(e.user, e.target): [c.item_id for c in h]
             for e, h in zip(examples, out_of_fold_heads(examples, 5, None, 0, lambda m: None))}
    for ex in train + valid:
        assert ex.target != test[ex.user]  # the test item is never an answer
        assert list(ex.candidates) == heads[(ex.user, ex.target)]  # the out-of-fold top 5
        assert ex.target in ex.candidates and len(ex.candidates) <= 5
        # the prompt lists the candidates, written from the catalog before the case
        prompt = ex.messages[-1]["content"]
        assert all(cat.get(i).title.split(" (")[0] in prompt for i in ex.candidates)
        assert sum(ex.popularity) <= sum(cat.get(i).popularity for i in ex.candidates)


def test_user_roles_split_the_rest():
    train, valid = user_roles(range(100), set(range(20)), seed=3)
    assert len(valid) == 8 and len(train) == 72 and not train & valid
    assert (train | valid) == set(range(20, 100))
    assert user_roles(range(100), set(range(20)), seed=3) == (train, valid)  # seeded


def test_candidates_from_is_checked_and_keys_the_cache():
    assert load_config(None).data_key() != load_config(None, candidates_from="fusion").data_key()
    with pytest.raises(ConfigError, match="candidates_from"):
        load_config(None, candidates_from="sasrec")
    assert load_config("cpu-smollm2-135m-fusion").candidates_from == "fusion"

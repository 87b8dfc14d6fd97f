"""Fine-tuning examples whose candidates are the learned fusion's top ``n`` (issue 16).

``finetune.data`` writes each prompt from the hybrid retriever's top ``n``; since the
agent ranks known users with the fusion (SASRec, what came next, co-watching, Chroma,
popularity; ``agent.rank.fusion``), the LLM serves behind the fusion, and an adapter
fine-tuned for that should read the fusion's lists. Here the cases are the ``tailor``
evaluation system's own training cases (each user's held-out last items, with every
source fitted on the histories before them: ``agent.rank.shadow``), each ranked by a
fusion fitted on the other half of the users (out of fold, as an unseen user would be
ranked), and kept when the target is in the top ``n`` (the honest subset: nothing is
inserted). The prompt is written from the catalog as it stood before the case.

Which users: never a test item (the split's), and never the users whose cases
``tailor eval --systems llm-feature`` scores with the LLM to learn its column
(``eval.llm_feature.sample_cases``): an adapter trained on those very answers would
make the column look better than it is. Of the other users, ``VALID_SHARE`` are kept
for validation (checkpoint and fusion weight), the rest train.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

VALID_SHARE = 0.1


def user_roles(users: Sequence[int], reserved: set[int], seed: int,
               share: float = VALID_SHARE) -> tuple[set[int], set[int]]:
    """``(train, valid)`` users: ``reserved`` ones are in neither; ``share`` of the
    rest (at least one when there are two or more) validate.

    >>> user_roles(range(10), {0, 1}, 0)[1].isdisjoint({0, 1})
    True
    >>> [len(r) for r in user_roles(range(10), {0, 1}, 0)]
    [7, 1]
    """
    rest = sorted(set(users) - set(reserved))
    order = np.random.default_rng(seed + 2).permutation(rest).tolist()
    n_valid = max(1 if len(rest) > 1 else 0, round(share * len(rest)))
    return set(order[n_valid:]), set(order[:n_valid])


def fusion_examples(system, split, n: int, seed: int, reserved_cases: int,
                    count_tokens=None, log=print):
    """``(train, valid)`` ``finetune.data.Example`` lists from ``system`` (a trained
    ``tailor`` evaluation system over ``split``): see the module doc."""
    from agent.data.catalog import catalog_from_histories
    from agent.rank.shadow import HELD_OUT, shadow_split
    from agent.rank.verbalizer import VerbalizerRanker
    from agent.understand.state import known_user_state
    from eval.llm_feature import out_of_fold_heads, sample_cases
    from finetune.data import Example
    from agent.rank.fusion import FusionConfig

    examples = system.train_examples
    sequences = {c.user: [*c.history, c.target] for c in split.valid}
    truncated, cases = shadow_split(sequences, HELD_OUT)
    users = {e.user for e in examples}
    cases = [c for c in cases if c[0] in users]
    if [(u, t) for u, _, t in cases] != [(e.user, e.target) for e in examples]:
        raise RuntimeError("the tailor system's training cases are not the shadow split's")
    reserved = {examples[k].user for k in sample_cases(examples, reserved_cases, seed)}
    train_users, valid_users = user_roles(sorted(users), reserved, seed)
    before = catalog_from_histories(split.train_catalog, truncated,
                                    f"fusion training: last {HELD_OUT} items held out")
    ranker = VerbalizerRanker(None, before, n_llm=n, few_shot=False, count_tokens=count_tokens)
    heads = out_of_fold_heads(examples, n, FusionConfig(), seed, log)
    out: dict[str, list] = {"train": [], "valid": []}
    for (user, history, target), head in zip(cases, heads):
        role = "train" if user in train_users else "valid" if user in valid_users else None
        ids = [c.item_id for c in head]
        if role is None or target not in ids:
            continue
        state = known_user_state(history)
        out[role].append(Example(user, "history", tuple(ids), tuple(c.score for c in head),
                                 tuple(before.get(i).popularity for i in ids),
                                 ids.index(target), tuple(ranker.messages(state, head))))
    log(f"fusion candidates: {len(out['train'])} training and {len(out['valid'])} validation "
        f"examples from {len(cases)} cases (target in the top {n}); {len(reserved)} users "
        "left to llm-feature")
    return out["train"], out["valid"]

"""The offline evaluation suite (`tailor eval`).

Full-ranking leave-one-out over every catalog item (``protocols``, ``metrics``: pure
functions with doctests), the systems compared (``systems``, ``sasrec``, ``two_stage``
for the agent's own pipeline, ``ablation``, ``tail_choice`` for its default
``tail_boost``, ``llm_feature`` for the LLM's score as a fusion column), simulated
conversations (``simulator``), the request and dialogue suites (``understanding``,
``dialogue_suite``, ``dialogue_checks``, ``withheld``, ``explanations``); ``run`` and
``experiment`` coordinate and ``report`` writes JSON and Markdown with per-case scores
kept.
"""

"""``tailor bench``: how fast the agent is on this machine, against explicit targets.

One module per measured concept (``floor``, ``ranking``, ``latency``, ``retrieval``,
``eval_speed``, ``api_load`` with ``servers``; ``dialogues`` holds the turns they time);
``run`` coordinates them, ``stats`` summarises timings and ``report`` writes
``bench.json`` and ``bench.md``. ``rank_agreement`` (run alone:
``python -m bench.rank_agreement``) compares the quantized ranking modes with fp32.
"""

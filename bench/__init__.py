"""``tailor bench``: how fast the agent is on this machine, against explicit targets.

One module per measured concept (``floor``, ``ranking``, ``latency``, ``retrieval``,
``eval_speed``, ``vllm``, ``api_load``); ``run`` coordinates them and ``report``
writes ``bench.json`` and ``bench.md``.
"""

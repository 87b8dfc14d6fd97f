"""LoRA / QLoRA fine-tuning with peft (`tailor finetune`).

Two tasks: ranking (``data`` renders leak-free examples from interaction histories
with the same prompt files the agent uses, over the retriever's candidates;
``fusion_data`` over the learned fusion's) and understanding requests (``state_data``,
``state_train``: synthetic requests with the JSON form they fill). ``config`` holds
the typed recipes (``configs/*.yaml``), ``train`` the loop, ``report`` the held-out
comparison against the base model; ``run`` coordinates.
"""

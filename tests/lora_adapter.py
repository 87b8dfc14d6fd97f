"""A random-init LoRA adapter for a real model, saved the way fine-tuning saves one."""

from __future__ import annotations

from pathlib import Path


def save_random_lora(model_dir: str, out_dir: Path, seed: int = 0, r: int = 8) -> Path:
    """Save a LoRA (rank ``r`` on q_proj and v_proj) with random A and B for ``model_dir``.

    peft initialises B to zero (a no-op adapter); ``init_lora_weights=False``
    makes both random, so the adapter measurably changes the model's scores.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(str(out_dir))
    return out_dir

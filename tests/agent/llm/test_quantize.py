"""INT8 W8A8 export (compressed-tensors), on a tiny random model saved to disk."""

import json

import pytest
from safetensors import safe_open

from agent.errors import AssetError
from agent.llm.quantize import quantize_w8a8
from tests.tiny_lm import tiny_model_and_tokenizer


def test_w8a8_export_writes_int8_weights_with_per_channel_scales(tmp_path):
    model, tok = tiny_model_and_tokenizer()
    model.save_pretrained(tmp_path / "src")
    tok.save_pretrained(tmp_path / "src")
    dst = quantize_w8a8(tmp_path / "src", tmp_path / "w8a8", log=lambda m: None)
    qc = json.loads((dst / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "int-quantized"
    group = qc["config_groups"]["group_0"]
    assert group["weights"]["num_bits"] == 8 and group["weights"]["strategy"] == "channel"
    assert group["input_activations"]["dynamic"] is True and qc["ignore"] == ["lm_head"]
    with safe_open(str(dst / "model.safetensors"), "pt") as f:
        w = f.get_tensor("model.layers.0.self_attn.q_proj.weight")
        scale = f.get_tensor("model.layers.0.self_attn.q_proj.weight_scale")
    original = model.model.layers[0].self_attn.q_proj.weight.detach()
    assert str(w.dtype) == "torch.int8" and scale.shape == (original.shape[0], 1)
    assert w.abs().amax(dim=1).eq(127).all()  # each row's largest weight maps to 127
    assert (w.float() * scale - original).abs().max() <= scale.max() / 2 + 1e-6
    assert (dst / "tokenizer.json").is_file()


def test_export_refuses_to_overwrite_and_needs_a_model(tmp_path):
    with pytest.raises(AssetError, match="no config.json"):
        quantize_w8a8(tmp_path, tmp_path / "out")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "out").mkdir()
    with pytest.raises(AssetError, match="already exists"):
        quantize_w8a8(tmp_path, tmp_path / "out")

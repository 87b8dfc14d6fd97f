"""Linear layers with their weights packed once for the CPU's fastest matrix kernel.

``torch.nn.Linear`` on CPU hands each product to MKL's sgemm, which re-lays the weight
out in cache-sized blocks on every call. oneDNN can lay it out once, at load time; the
product then runs from the packed copy. On this project's 2-core AVX2 CPU a SmolLM2
layer's projections for a ranking prompt (~230 tokens) ran at 67 GFLOP/s packed
against 53 unpacked (the bench's ranking pass 1.10 s → 1.01 s at p50: attention and the
element-wise work are not sped up); for a single decoded token
the packed kernel is slower (0.71 against 0.49 ms a layer), so generation loses a
little of what ranking gains (``bench/`` measures both). PyTorch's own compiler packs
linear weights the same way when it freezes a model for CPU inference
(``torch._inductor`` ``freezing``); this does it without compiling anything.

Only plain fp32 ``nn.Linear`` modules inside the decoder's layers are packed: the LM
head (one row per ranking prompt, and tied to the embedding) and quantized layers stay
as they are. A model whose layers cannot be packed, or whose packed output differs from
the original's, is left unchanged.
"""

from __future__ import annotations

import logging

import torch  # this module is imported only where the model is already loaded

log = logging.getLogger(__name__)


class PackedLinear(torch.nn.Module):
    """One ``nn.Linear``'s product from a weight packed by oneDNN (same bias)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_numel = linear.weight.numel()  # parameter counts (bench) still see it
        # a buffer, so memory accounting (get_memory_footprint) still sees the weight
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(
            linear.weight.detach(), None), persistent=False)
        self.bias = linear.bias

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)
        y = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed"


def packable(model) -> bool:
    """An fp32 model on the CPU, and a torch built with oneDNN."""
    try:
        p = next(model.parameters())
    except StopIteration:
        return False
    return (p.dtype == torch.float32 and p.device.type == "cpu"
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def pack_linears(model, tolerance: float = 1e-3) -> int:
    """Replace the decoder layers' ``nn.Linear`` modules by packed ones, in place;
    returns how many were packed. Nothing changes (0) when the model is not
    ``packable``, has no ``get_decoder().layers``, or a packed layer's output on a
    random input differs from the original's by more than ``tolerance`` of its scale."""
    if not packable(model) or not hasattr(model, "get_decoder"):
        return 0
    layers = getattr(model.get_decoder(), "layers", None)
    if layers is None:
        return 0
    swaps = [(parent, name, child) for layer in layers for parent in layer.modules()
             for name, child in parent.named_children() if type(child) is torch.nn.Linear]
    packed = []
    try:
        with torch.inference_mode():
            for _, _, child in swaps:
                p = PackedLinear(child)
                x = torch.randn(5, child.in_features)
                want = child(x)
                if (want - p(x)).abs().max() > tolerance * (want.abs().max() + 1e-6):
                    log.warning("packed linear weights disagree; the model stays unpacked")
                    return 0
                packed.append(p)
    except RuntimeError as e:  # a oneDNN build that cannot pack these shapes
        log.warning("linear weights could not be packed (%s); the model stays unpacked", e)
        return 0
    for (parent, name, _), p in zip(swaps, packed):
        setattr(parent, name, p)
    return len(swaps)

"""FLOPs of a decoder's forward pass, counted the way a FLOP floor needs them.

Per new token a decoder does 2 FLOPs per weight of its layers (a multiply and an add),
plus attention's own products, which grow with the context: the query against every
key it sees (2 · d_attn per key) and the weighted sum of their values (2 · d_attn per
key), in every layer (Kaplan et al. 2020, "Scaling laws for neural language models",
Table 1, with the causal context of each token counted exactly). The LM head adds
2 · vocab · hidden for every position whose logits are computed. The token embedding
is a look-up and costs nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """What a forward pass's FLOPs depend on."""

    layer_params: int  # weights of the decoder layers (non-embedding, LM head excluded)
    layers: int
    attn_dim: int  # query heads × head dim
    hidden: int
    vocab: int

    @classmethod
    def of(cls, model) -> Shape:
        config = model.config
        heads = int(config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        layers = model.get_decoder().layers
        params = sum(p.numel() for p in layers.parameters())
        params += sum(getattr(m, "weight_numel", 0) for m in layers.modules())  # packed
        return cls(int(params), int(config.num_hidden_layers), heads * head_dim,
                   int(config.hidden_size), int(config.vocab_size))


def attention_flops(shape: Shape, new: int, past: int) -> float:
    """Score and value products of ``new`` tokens after ``past`` cached ones, each new
    token seeing the past, the new tokens before it and itself.

    >>> attention_flops(Shape(0, 2, 8, 8, 10), new=2, past=3)  # 4 · 2 · 8 · (4 + 5)
    576.0
    """
    keys = new * past + new * (new + 1) / 2
    return 4.0 * shape.layers * shape.attn_dim * keys


def forward_flops(shape: Shape, new: int, past: int = 0, logits: int = 1) -> float:
    """One forward pass over ``new`` tokens after ``past`` cached ones, computing the
    LM head for ``logits`` positions.

    >>> forward_flops(Shape(100, 2, 8, 8, 10), new=2, past=3, logits=1)  # 400 + 576 + 160
    1136.0
    """
    return (2.0 * shape.layer_params * new + attention_flops(shape, new, past)
            + 2.0 * shape.vocab * shape.hidden * logits)


def generation_flops(shape: Shape, prompt: int, steps: int) -> float:
    """Greedy generation of ``steps`` tokens for one ``prompt``-token row: the prompt in
    one pass, then one token at a time against the growing cache.

    >>> s = Shape(100, 2, 8, 8, 10)
    >>> generation_flops(s, 3, 2) == forward_flops(s, 3) + forward_flops(s, 1, past=3)
    True
    """
    if steps <= 0:
        return 0.0
    return forward_flops(shape, prompt) + sum(forward_flops(shape, 1, past=prompt + k)
                                              for k in range(steps - 1))

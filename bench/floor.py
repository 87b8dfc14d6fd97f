"""The ranking forward pass's FLOP floor: what the prompt would cost if this CPU ran
every FLOP at its measured matmul peak and did nothing else.

The FLOPs are ``agent.llm.flops.forward_flops``: 2 per layer weight per token (a
multiply and an add), attention's score and value products over each token's causal
context (the cached prefix included), and the LM head for the last position only
(``logits_to_keep=1``); the embedding is a look-up. Until December 2026 the floor
counted the layer weights alone, which left out attention (~15% of a ranking prompt's
FLOPs) and made the floor too low. The peak is the best of torch's matmul (MKL) and
oneDNN's packed linear (what the agent runs, ``agent.llm.packed``) on the model's own
shapes: the fastest kernel this CPU has for them.
"""

from __future__ import annotations

import time


def flop_floor_s(flops: float, gflops: float) -> float:
    """Seconds for ``flops`` FLOPs at ``gflops`` GFLOP/s.

    >>> flop_floor_s(40e9, 100.0)
    0.4
    """
    if gflops <= 0:
        raise ValueError(f"gflops must be positive, not {gflops}")
    return flops / (gflops * 1e9)


def matmul_gflops_from(m: int, k: int, n: int, repeats: int, seconds: float) -> float:
    """GFLOP/s of ``repeats`` products of an ``m × k`` by a ``k × n`` matrix in ``seconds``.

    >>> matmul_gflops_from(100, 500, 1000, 10, 0.1)
    10.0
    """
    return 2.0 * m * k * n * repeats / seconds / 1e9


def model_dims(config) -> dict:
    """The shapes a llama-style layer multiplies by (from a transformers config)."""
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    return {"hidden": hidden, "intermediate": int(config.intermediate_size),
            "layers": int(config.num_hidden_layers), "heads": heads,
            "kv_heads": int(getattr(config, "num_key_value_heads", heads)), "head_dim": head_dim,
            "vocab": int(config.vocab_size)}


def param_counts(model) -> dict:
    """Total parameters (a tied LM head counted once) and those outside the embedding."""
    total = sum(p.numel() for p in model.parameters())
    total += sum(getattr(m, "weight_numel", 0) for m in model.modules())  # packed weights
    embedding = model.get_input_embeddings().weight.numel()
    return {"total": int(total), "embedding": int(embedding),
            "non_embedding": int(total - embedding),
            "tied_lm_head": bool(getattr(model.config, "tie_word_embeddings", False))}


def matmul_shapes(dims: dict, tokens: list[int]) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of the layer's projections for each prompt length: the MLP's
    up/gate (hidden → intermediate) and down (intermediate → hidden), and the
    attention output (hidden → hidden).

    >>> matmul_shapes({"hidden": 4, "intermediate": 8}, [3])
    [(3, 4, 8), (3, 8, 4), (3, 4, 4)]
    """
    h, i = dims["hidden"], dims["intermediate"]
    return [shape for t in tokens for shape in ((t, h, i), (t, i, h), (t, h, h))]


def kernels(m: int, k: int, n: int) -> dict:
    """The products to time for one shape: torch's matmul, and oneDNN's packed linear
    where this torch has it."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    found = {"matmul": lambda: torch.matmul(a, b, out=out)}
    from agent.llm.packed import packable

    if packable(torch.nn.Linear(k, n)):
        packed = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), None)
        found["packed"] = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none",
                                                                     [], "")
    return found


def measure_matmul_gflops(shapes: list[tuple[int, int, int]], seconds: float = 0.5,
                          rounds: int = 3) -> dict:
    """Peak sustained fp32 GFLOP/s of matrix products of these shapes on this CPU.

    Each shape and kernel (``kernels``) runs back-to-back products for ``seconds``,
    ``rounds`` times; a round's rate is sustained (many products, not one lucky one),
    and the best round of the best shape and kernel is the peak. Uses torch's current
    thread count.
    """
    import torch

    per_shape = []
    for m, k, n in shapes:
        for name, product in kernels(m, k, n).items():
            for _ in range(3):  # warm the allocator and the BLAS thread pool
                product()
            best = 0.0
            for _ in range(rounds):
                repeats, t0 = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - t0) < seconds:
                    product()
                    repeats += 1
                best = max(best, matmul_gflops_from(m, k, n, repeats, elapsed))
            per_shape.append({"shape": [m, k, n], "kernel": name, "gflops": best})
    peak = max(per_shape, key=lambda s: s["gflops"])
    return {"peak_gflops": peak["gflops"], "peak_shape": peak["shape"],
            "peak_kernel": peak["kernel"], "shapes": per_shape,
            "threads": torch.get_num_threads(), "dtype": "float32",
            "seconds_per_round": seconds, "rounds": rounds}

"""Full-softmax cross-entropy over a catalog, fused with its output layer.

``cross_entropy(h @ w.T, y)`` writes a ``(positions, items)`` matrix of logits, then its
log-softmax, then their gradients: on ML-1M's SASRec shapes (3,500 positions, 3,706
items) half a training step went to moving those 13M-float matrices through memory.
``linear_cross_entropy`` computes the same loss and gradients in row chunks that stay in
cache, keeping only each row's log-sum-exp between the passes (the logits of a chunk
are computed again in the backward pass). Same maths: the loss and gradients agree with
the unfused form to float rounding (a test checks it); 2× faster on that shape."""

from __future__ import annotations

CHUNK = 512  # rows per chunk: 512 × 3,706 floats is 7.6 MB, fastest on this CPU (256-512)

_FUNCTION = None


def linear_cross_entropy(h, w, y, chunk: int = CHUNK):
    """Mean over rows of ``-log softmax(h @ w.T)[row, y[row]]``; ``h``: (n, d) with n ≥ 1,
    ``w``: (items, d), ``y``: (n,) class ids. Differentiable in ``h`` and ``w``."""
    global _FUNCTION
    if _FUNCTION is None:
        _FUNCTION = _make_function()
    return _FUNCTION.apply(h, w, y, chunk)


def _make_function():
    import torch
    from torch.nn import functional as F

    class LinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, w, y, chunk):
            lse = h.new_empty(h.shape[0])
            for start in range(0, h.shape[0], chunk):
                rows = slice(start, start + chunk)
                lse[rows] = torch.logsumexp(F.linear(h[rows], w), 1)
            ctx.save_for_backward(h, w, y, lse)
            ctx.chunk = chunk
            return (lse - (h * w[y]).sum(1)).mean()

        @staticmethod
        def backward(ctx, grad):
            h, w, y, lse = ctx.saved_tensors
            scale = float(grad) / h.shape[0]
            grad_h, grad_w = torch.empty_like(h), torch.zeros_like(w)
            for start in range(0, h.shape[0], ctx.chunk):
                rows = slice(start, start + ctx.chunk)
                # d loss / d logits = (softmax - one-hot) * scale; the one-hot part is
                # added once for all rows below
                p = F.linear(h[rows], w).sub_(lse[rows, None]).exp_().mul_(scale)
                grad_h[rows] = p @ w
                grad_w.addmm_(p.T, h[rows])
            grad_h.sub_(w[y], alpha=scale)
            grad_w.index_add_(0, y, h, alpha=-scale)
            return grad_h, grad_w, None, None

    return LinearCrossEntropy

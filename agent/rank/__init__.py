"""The third step: order the candidates (RRF or the learned fusion; the LLM verbalizer as
one ranker), then re-rank towards the long tail and variety, keeping at least the
sequence model's share of long-tail items (the tail floor)."""

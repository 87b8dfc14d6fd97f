"""The second step: candidates from several sources (semantic Chroma search with filters,
the sequential model, co-watching, shared facts, popularity that fits)."""

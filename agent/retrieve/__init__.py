"""The second step: candidates from several sources (semantic Chroma search with filters,
the sequential model, what came next in other histories, co-watching, shared facts,
popularity that fits)."""

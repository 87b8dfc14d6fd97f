"""Sentence embeddings from a local model: our own Chroma embedding function.

Chroma's default embedding function downloads an ONNX model on first use,
which fails offline; Tailor always passes this one instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings


class SentenceEmbedder(EmbeddingFunction[Documents]):
    """Wraps a sentence-transformers model folder; returns L2-normalized vectors."""

    def __init__(self, path: str, batch_size: int = 64):
        self.path = str(path)
        self.batch_size = batch_size
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.path, device="cpu")
        return self._model

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=progress).astype(np.float32)

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.encode(list(input)))

    @staticmethod
    def name() -> str:
        return "tailor-sentence-transformers"

    def get_config(self) -> dict[str, Any]:
        return {"path": self.path}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "SentenceEmbedder":
        return SentenceEmbedder(config["path"])

    def default_space(self) -> str:
        return "cosine"

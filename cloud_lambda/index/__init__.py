"""k-NN indexes behind one interface: exact (numpy) and HNSW (faiss)."""

from cloud_lambda.index.base import INDEX_KINDS, VectorIndex, VectorIndexError, create_index, load_index

__all__ = ["INDEX_KINDS", "VectorIndex", "VectorIndexError", "create_index", "load_index"]

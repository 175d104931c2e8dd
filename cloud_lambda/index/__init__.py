"""k-NN indexes behind one interface: exact (numpy), HNSW over float32, HNSW over float16 / 8-bit codes
(optionally after a projection), IVF-PQ (faiss). ``choice`` picks one by catalog size."""

from cloud_lambda.index.base import INDEX_KINDS, VectorIndex, VectorIndexError, create_index, kinds, load_index

__all__ = ["INDEX_KINDS", "VectorIndex", "VectorIndexError", "create_index", "kinds", "load_index"]

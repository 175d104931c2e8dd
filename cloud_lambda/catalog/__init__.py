"""Catalog indexing: validate → decode (worker processes) → featurize (batches) → index + metadata."""

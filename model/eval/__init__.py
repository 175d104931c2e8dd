"""Retrieval-quality evaluation of featurizer variants on data that ships in packages (deterministic)."""

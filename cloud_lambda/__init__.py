"""Cloud side: catalog indexing, k-NN search Lambda, API Lambda, metadata stores, Redis match lists."""

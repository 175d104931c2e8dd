"""Retrieval settings on the product path: what the device featurizes, how the catalog is indexed and searched.

- :mod:`model.retrieval.pooling` — GeM / R-MAC / regional pooling of the backbone's feature map, in the graph.
- :mod:`model.retrieval.query_regions` — which regions of a device frame are featurized.
- :mod:`model.retrieval.catalog_views` — several views per catalog item, folded back per item (max) at search.
- :mod:`model.retrieval.settings` — the settings recorded in sidecar and index manifest, the defaults and their check.

The defaults were chosen by the held-up evaluation (:mod:`model.eval.heldup`, docs/match-quality.md).
"""

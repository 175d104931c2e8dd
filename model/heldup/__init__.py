"""Match quality for objects held up to the camera (issue 8).

- :mod:`model.heldup.views` — deterministic synthetic "held up" frames of a catalog photo.
- :mod:`model.heldup.pooling` — GeM / R-MAC / multi-scale pooling of the backbone's feature map, in the graph.
- :mod:`model.heldup.multiview` — several views per catalog item and per-item max aggregation at search time.
- :mod:`model.heldup.proposals` — cheap query-side object-region proposals on the device.
- :mod:`model.heldup.settings` — the retrieval settings recorded in sidecar and index manifest, and their check.
- :mod:`model.heldup.evaluate` — the held-up evaluation behind ``visual-search model eval --heldup``.
"""

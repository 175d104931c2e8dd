"""The held-up-object evaluation (evaluation only; nothing on the product path imports it).

- :mod:`model.eval.heldup.views` — deterministic synthetic "held up" frames of a catalog photo.
- :mod:`model.eval.heldup.evaluate` — embedders, recall@k, device time and search cost of one option.
- :mod:`model.eval.heldup.exports` — one export per pooling under test, beside the deployed default.
- :mod:`model.eval.heldup.run` — the table behind ``visual-search model eval --heldup``.

The retrieval settings it chooses live in the product module :mod:`model.retrieval`.
"""

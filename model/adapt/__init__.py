"""Catalog adaptation: learning from the user's own catalog, with no labels beyond the catalog itself.

- :mod:`model.adapt.views` — training views made from each catalog image (deliberately unlike the evaluation's).
- :mod:`model.adapt.head` — a linear projection head trained with an ArcFace margin over region vectors.
- :mod:`model.adapt.pipeline` — views → the device's own vectors (cached, resumable) → head, with a
  before/after table on held-out views.
- :mod:`model.adapt.finetune` — the alternative: fine-tuning the backbone's last blocks, exported with int8
  calibrated on the user's own images.
"""

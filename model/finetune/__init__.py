"""Fine-tune the featurizer on a user's own labelled catalog (torch, offline only).

Pipeline: data sources (folder / SageMaker manifest / im2rec list) → validation with the catalog rules →
stratified split → training (head first, then the last backbone blocks) with hand-held-camera
augmentation → best checkpoint → export through ``model.export`` → before/after retrieval comparison.
"""

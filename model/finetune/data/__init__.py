"""Labelled image sources for fine-tuning: one reader per input format, plus validation and the split."""

from model.finetune.data.base import DatasetError, LabelledSet, Problem, Sample, read_source

__all__ = ["DatasetError", "LabelledSet", "Problem", "Sample", "read_source"]

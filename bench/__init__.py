"""Benchmarks: ``make bench`` runs every section and prints tables of ratios measured in one run."""

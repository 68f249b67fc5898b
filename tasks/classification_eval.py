"""Kept only for tasks/knn.py's import while that file is rewritten elsewhere: top-k evaluation
lives in maebench/classification.py. Delete this file once knn.py imports from there."""
from maebench.classification import accuracy_from_counts, topk_correct  # noqa: F401

__all__ = ["accuracy_from_counts", "topk_correct"]

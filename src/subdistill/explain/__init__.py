"""Explainability analysis: do teacher and student decide for the same reasons?

Modules: ``target`` (the explained quantity, the true-class logit gap), ``canonizers`` (LRP-ready
forms of supported architectures), ``attribution`` (LRP / Integrated Gradients / Shapley
heatmaps), ``patches`` (patch geometry), ``metrics`` (heatmap similarity) and ``flipping``
(patch-flipping curves). Importing this package does not import zennit or captum.
"""

from subdistill.explain.errors import ExplainError

__all__ = ["ExplainError"]

"""Inference: labels from a model or an exported graph (backends), evaluation, prediction
and export."""

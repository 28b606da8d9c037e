"""Training, evaluation, prediction, checkpoints and distributed setup."""

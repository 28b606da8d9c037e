"""Training: the loop, its set-up from a config, the run directory, the recipe and the
run log. Reads top to bottom from :mod:`fcnkit.training.loop`."""

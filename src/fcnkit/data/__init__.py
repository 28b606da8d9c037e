"""Datasets: embedded synthetic generator, Pascal VOC and image/mask folder readers."""

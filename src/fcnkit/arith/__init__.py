"""Convolution arithmetic: pure geometry (stdlib + numpy/scipy), never imports torch."""

"""fcnkit: fully convolutional semantic segmentation and the convolution arithmetic behind it.

Importing ``fcnkit`` (or ``fcnkit.arith``) does not import torch; the models, data,
training, inference and runtime subpackages do.
"""

__version__ = "0.1.0"

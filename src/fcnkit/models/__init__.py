"""Fully convolutional networks: backbones, heads, FCN-32s/16s/8s, surgery, registry."""

"""Torch-aware analysis of models: receptive fields by tracing, and the model table.

* :mod:`fcnkit.analysis.trace` -- :func:`receptive_field_of` runs one forward pass under a
  :class:`torch.overrides.TorchFunctionMode` and carries every tensor's receptive field
  (:class:`fcnkit.arith.ReceptiveField`) through convolutions, pooling, resampling, crops,
  pads and merges; :func:`model_for_analysis` builds fcnkit and torchvision models for it.
* :mod:`fcnkit.analysis.table` -- the model table of ``fcnkit models``
  (:func:`model_summary`, :func:`count_flops`, :data:`TABLE_VARIANTS`).

It reports on models, so it sits above :mod:`fcnkit.models`, which imports nothing from
this package.
"""

from fcnkit.analysis.table import TABLE_VARIANTS, count_flops, describe_options, model_summary
from fcnkit.analysis.trace import (
    LayerRecord,
    conv_body_records,
    model_for_analysis,
    receptive_field_of,
)

__all__ = [
    "TABLE_VARIANTS",
    "LayerRecord",
    "conv_body_records",
    "count_flops",
    "describe_options",
    "model_for_analysis",
    "model_summary",
    "receptive_field_of",
]

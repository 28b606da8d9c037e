"""Convolution arithmetic: pure geometry (stdlib + numpy/scipy), never imports torch."""

from fcnkit.arith.kernels import bilinear_kernel, bilinear_kernel_1d, bilinear_upsampling_weight
from fcnkit.arith.matrix import (
    conv2d,
    conv_matrix,
    conv_transpose2d,
    conv_transpose_via_matrix,
    convolve2d,
    correlate2d,
    zero_insert,
)
from fcnkit.arith.sizes import (
    TransposedEquivalent,
    UpsamplingRecipe,
    as_pair,
    conv_output_size,
    conv_transpose_output_size,
    effective_kernel,
    output_padding_for,
    pool_output_size,
    same_padding,
    transposed_equivalent,
    upsampling_recipe,
)

__all__ = [
    "TransposedEquivalent",
    "UpsamplingRecipe",
    "as_pair",
    "bilinear_kernel",
    "bilinear_kernel_1d",
    "bilinear_upsampling_weight",
    "conv2d",
    "conv_matrix",
    "conv_transpose2d",
    "conv_transpose_via_matrix",
    "convolve2d",
    "correlate2d",
    "zero_insert",
    "conv_output_size",
    "conv_transpose_output_size",
    "effective_kernel",
    "output_padding_for",
    "pool_output_size",
    "same_padding",
    "transposed_equivalent",
    "upsampling_recipe",
]

# Receptive fields (issue 3).
from fcnkit.arith.receptive import (  # noqa: E402
    FusionCrops,
    LayerGeometry,
    ReceptiveField,
    crop_offset,
    integer_crop,
    layer_geometry,
    merge_receptive_fields,
    receptive_field,
    skip_fusion_crops,
)

__all__ += [
    "FusionCrops",
    "LayerGeometry",
    "ReceptiveField",
    "crop_offset",
    "integer_crop",
    "layer_geometry",
    "merge_receptive_fields",
    "receptive_field",
    "skip_fusion_crops",
]

# Dilated stacks: coverage, HDC check, rate suggestions (issue 3).
from fcnkit.arith.gridding import (  # noqa: E402
    HDCReport,
    RateSuggestion,
    dilation_coverage,
    hdc_check,
    hdc_schedule,
    prefix_rule_ok,
    suggest_rates,
)

__all__ += [
    "HDCReport",
    "RateSuggestion",
    "dilation_coverage",
    "hdc_check",
    "hdc_schedule",
    "prefix_rule_ok",
    "suggest_rates",
]

# Resampling (F.interpolate, adaptive pooling) as fractional-stride layers.
from fcnkit.arith.resample import (  # noqa: E402
    adaptive_pool_equivalent,
    interpolate_equivalent,
    resample_equivalent,
)

__all__ += ["adaptive_pool_equivalent", "interpolate_equivalent", "resample_equivalent"]

from fcnkit.arith.tiling import check_overlap, sliding_window_starts  # noqa: E402

__all__ += ["check_overlap", "sliding_window_starts"]

from fcnkit.arith.layer import describe_layer  # noqa: E402

__all__ += ["describe_layer"]

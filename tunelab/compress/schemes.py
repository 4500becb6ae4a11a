"""Quantization scheme names and what each does, without torch (the CLI parser lists them)."""

SCHEMES = {
    "int8-dynamic": "int8 weights and dynamically quantized int8 activations (torch.ao, fbgemm/oneDNN int8 kernels)",
    "int8-weight-only": "int8 weights per output channel, fp32 activations (torchao Int8WeightOnlyConfig)",
    "int4-weight-only": "int4 weights in groups of 32, fp32 activations (torchao IntxWeightOnlyConfig, stored one value per byte)",
}

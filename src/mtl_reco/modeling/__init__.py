"""Framework-free multi-task modeling library (plain PyTorch; never imports Kedro).

What a researcher imports in a notebook: the feature schema, tensor batching,
layers, the five architectures, loss-weighting strategies, the trainer,
metrics and ONNX export. It never reads files, never prints and never picks
a device on its own (callers pass ``device``; ``"auto"`` is allowed).
"""

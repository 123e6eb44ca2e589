"""Opt-in speed kernels: hand-written autograd and lazy sparse optimizers.

Nothing here runs unless a configuration asks for it; the default path of
every model is :mod:`mtl_reco.modeling.layers`, public PyTorch operations
only. A kernel earns its place here by a side-by-side measurement
(``benchmarks/train_throughput.py``: default, ``torch.compile`` and kernels):

* :mod:`~mtl_reco.modeling.kernels.experts` - other compute layouts of the
  MMoE/PLE expert banks (``expert_layout: manual | per_expert | bmm``),
  including a hand-written ReLU backward for CPU training;
* :mod:`~mtl_reco.modeling.kernels.sparse_grad` - row-sparse embedding
  gradients and the lazy Adam/AdamW/SGD that update only the looked-up rows
  (``TrainerConfig.sparse_embedding_grad``).

Every kernel computes the function of the default path with the same
parameters, and falls back to it on CUDA, under autocast and whenever a
model is traced, compiled or exported (exported graphs are standard ops).
"""

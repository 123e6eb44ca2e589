"""mtl_reco: multi-task recommendation as a Kedro project.

Layers:

* :mod:`mtl_reco.sources` - readers and the simulator producing raw event tables;
* :mod:`mtl_reco.processing` - validation rules, labels, splits, feature encoding;
* :mod:`mtl_reco.modeling` - the framework-free PyTorch library (models,
  loss weighting, trainer, metrics, ONNX export);
* :mod:`mtl_reco.pipelines` and :mod:`mtl_reco.datasets` - the Kedro glue.
"""

__version__ = "0.1.0"

"""Per-experiment training, evaluation and export, written once.

An *experiment* is a named parameter block (``mmoe``, ``esmm``, ``mmoe_uwl``…)
that picks ``model.name`` and ``weighting.name``; it is not the same as a
model name. :data:`EXPERIMENTS` lists the experiments that get a
``train_<experiment>`` pipeline. To add one, append its name here and add a
block with the same name to ``conf/base/parameters_training.yml``::

    mmoe_gradnorm:
      model: {name: mmoe, params: {n_experts: 8}}
      weighting: {name: gradnorm, params: {alpha: 1.5}}

The template lives outside ``mtl_reco.pipelines`` on purpose: Kedro's
``find_pipelines`` registers every folder there, and the bare (un-namespaced)
template must not be runnable.
"""

EXPERIMENTS: tuple[str, ...] = ("shared_bottom", "esmm", "mmoe", "ple", "aitm")

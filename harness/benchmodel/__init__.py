"""``harness bench-model``: the inference and training-step benchmark behind the models
table (anchored on timm's ``benchmark.py``). See docs/models.md.

- :mod:`harness.benchmodel.catalogue`: which models, built how, at which input sizes;
- :mod:`harness.benchmodel.runtimes`: eager / bf16 / fp16 / channels_last / compile /
  ONNX Runtime / OpenVINO, each a callable checked against eager PyTorch first;
- :mod:`harness.benchmodel.measure`: params, GFLOPs, latency, throughput, train step, memory;
- :mod:`harness.benchmodel.report`: CSV, Markdown, plots, W&B, hardware description;
- :mod:`harness.benchmodel.cli`: the command.
"""

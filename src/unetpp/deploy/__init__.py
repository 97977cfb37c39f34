"""Deployment: files other runtimes read, the runtime a prediction runs in, and what each choice costs.

* :mod:`~unetpp.deploy.export`: ONNX (+ int8), ``torch.export`` and safetensors writers, each verified;
* :mod:`~unetpp.deploy.backends`: eager PyTorch, ONNX Runtime or OpenVINO, chosen by measurement;
* :mod:`~unetpp.deploy.bench`: the paper's Fig. 5 per pruning level, and the choice of a depth;
* :mod:`~unetpp.deploy.runtime_table`: every installed runtime and precision on one model and shape.
"""

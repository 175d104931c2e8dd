"""The featurizer: an ImageNet CNN cut at global pooling, exported to ONNX with preprocessing in the graph.

Runtime modules (``contracts``, ``sidecar``, ``prepare``, ``featurizer``, ``runtime``) need only numpy,
OpenCV and onnxruntime/OpenVINO. Export modules (``backbones``, ``export``) need torch and run offline.
"""

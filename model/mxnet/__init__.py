"""MXNet (SageMaker image-classification / Gluon) checkpoints → contract-compliant ONNX featurizers.

mxnet itself lives in a separate virtual environment (:mod:`model.mxnet.env`); nothing here imports it.
"""

from model.mxnet.convert import MxnetConvertError, checkpoint_files, convert_mxnet_checkpoint
from model.mxnet.env import MxnetEnvError, ensure_mxnet_env

__all__ = ["MxnetConvertError", "MxnetEnvError", "checkpoint_files", "convert_mxnet_checkpoint", "ensure_mxnet_env"]

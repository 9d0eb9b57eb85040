"""Darknet's real YOLO layer on numpy arrays, beside numpy derivations of
its loss in the BCE and MSE readings.
"""

from pydarknet_loss.layer import TruthWarning, YoloLayer, YoloResult, YoloStats

__all__ = ["TruthWarning", "YoloLayer", "YoloResult", "YoloStats"]
__version__ = "0.1.0"

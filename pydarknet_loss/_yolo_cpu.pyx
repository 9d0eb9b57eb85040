# cython: language_level=3, boundscheck=False, wraparound=False
"""Upstream Darknet's YOLO layer, CPU build (compiled without -DGPU)."""

include "_yolo_common.pxi"

DEVICE = "cpu"

# cython: language_level=3, boundscheck=False, wraparound=False
"""Upstream Darknet's YOLO layer, CUDA build (compiled with -DGPU).

``forward`` copies host logits to the device and runs upstream
``forward_yolo_layer_gpu``; ``forward_device`` reads logits that already
lie in device memory.  Both raise RuntimeError without a CUDA device.
"""

from libc.stdint cimport uintptr_t

include "_yolo_common.pxi"

DEVICE = "cuda"


def device_count():
    """Return (number of CUDA devices, CUDA's message when that is 0)."""
    cdef int count = pdl_cuda_device_count()
    if count > 0:
        return count, ""
    return 0, pdl_cuda_error().decode("utf-8", "replace")


def forward_device(
    uintptr_t logits_pointer,
    tuple shape,
    const float[:, :, ::1] truth,
    const int[::1] mask,
    const float[::1] anchors,
    float[:, :, :, ::1] output,
    float[:, :, :, ::1] delta,
    int classes,
    int net_w,
    int net_h,
    float ignore_thresh,
    float truth_thresh,
    int max_boxes,
    int index,
):
    """Run upstream forward_yolo_layer_gpu on C-contiguous float32 logits of
    ``shape`` at device address ``logits_pointer``, which is only read.

    Private: pydarknet_loss.layer checks the array interface first.
    Returns (cost, stats tuple or None) as ``forward`` does.
    """
    cdef pdl_params p
    cdef pdl_stats stats
    cdef float cost = 0
    cdef int status
    cdef const float *truth_ptr = NULL
    cdef const float *input_ptr = <const float *>logits_pointer

    if len(shape) != 4 or logits_pointer == 0:
        raise ValueError("logits must be a non-null [batch, c, h, w] device array")
    p.batch, channels, p.h, p.w = shape
    p.n = mask.shape[0]
    p.total = anchors.shape[0] // 2
    p.classes = classes
    p.mask = &mask[0] if mask.shape[0] else NULL
    p.anchors = &anchors[0] if anchors.shape[0] else NULL
    p.net_w = net_w
    p.net_h = net_h
    p.ignore_thresh = ignore_thresh
    p.truth_thresh = truth_thresh
    p.max_boxes = max_boxes
    p.train = truth is not None
    p.index = index

    if channels != p.n * (5 + classes):
        raise ValueError("logits channels do not match mask and classes")
    if p.batch < 1 or p.h < 1 or p.w < 1:
        raise ValueError("logits must not be empty")
    for axis in range(4):
        if output.shape[axis] != shape[axis] or delta.shape[axis] != shape[axis]:
            raise ValueError("output and delta buffers must have the logits' shape")
    if anchors.shape[0] % 2:
        raise ValueError("anchors must hold (w, h) pairs")
    if truth is not None:
        if truth.shape[0] != p.batch or truth.shape[1] != PDL_TRUTH_ROWS:
            raise ValueError("truth buffer must be [batch, 90, 5]")
        if truth.shape[2] != PDL_TRUTH_SIZE:
            raise ValueError("truth buffer must be [batch, 90, 5]")
        truth_ptr = &truth[0, 0, 0]

    with nogil:
        status = pdl_forward_device(&p, input_ptr, truth_ptr,
                                    &output[0, 0, 0, 0], &delta[0, 0, 0, 0],
                                    &cost, &stats)

    if status != PDL_OK:
        error, message = _ERRORS.get(status, (RuntimeError, f"status {status}"))
        detail = pdl_cuda_error().decode("utf-8", "replace")
        raise error(f"pdl_forward_device failed: {message}"
                    + (f" ({detail})" if detail else ""))
    if truth is None:
        return None, None
    return cost, (stats.region, stats.avg_iou, stats.avg_class, stats.avg_obj,
                  stats.avg_no_obj, stats.recall50, stats.recall75, stats.count)

# Body shared by the CPU and CUDA twin modules.  Each module links its
# own build of the glue and upstream objects; this file only moves
# checked numpy buffers into pdl_forward and back.

from pydarknet_loss._glue cimport *

TRUTH_ROWS = PDL_TRUTH_ROWS
TRUTH_SIZE = PDL_TRUTH_SIZE

_ERRORS = {
    PDL_EINVAL: (ValueError, "a size or index is out of range"),
    PDL_ENOMEM: (MemoryError, "upstream make_yolo_layer could not allocate"),
    PDL_EREPORT: (RuntimeError, "upstream printed an unexpected statistics line"),
    PDL_ENODEVICE: (RuntimeError, "no CUDA device was found"),
    PDL_ECUDA: (RuntimeError, "a CUDA runtime call failed"),
    PDL_ENOTDEVICE: (ValueError, "the input pointer is not CUDA device memory"),
}


def forward(
    const float[:, :, :, ::1] logits,
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
    """Run upstream forward_yolo_layer; return (cost, stats tuple or None).

    Private: pydarknet_loss.layer checks every value first.  Only the
    buffer sizes that C indexes with are checked again here.
    """
    cdef pdl_params p
    cdef pdl_stats stats
    cdef float cost = 0
    cdef int status
    cdef const float *truth_ptr = NULL

    p.batch = logits.shape[0]
    p.h = logits.shape[2]
    p.w = logits.shape[3]
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

    if logits.shape[1] != p.n * (5 + classes):
        raise ValueError("logits channels do not match mask and classes")
    if p.batch < 1 or p.h < 1 or p.w < 1:
        raise ValueError("logits must not be empty")
    for axis in range(4):
        if output.shape[axis] != logits.shape[axis]:
            raise ValueError("output buffer shape differs from logits")
        if delta.shape[axis] != logits.shape[axis]:
            raise ValueError("delta buffer shape differs from logits")
    if anchors.shape[0] % 2:
        raise ValueError("anchors must hold (w, h) pairs")
    if truth is not None:
        if truth.shape[0] != p.batch or truth.shape[1] != PDL_TRUTH_ROWS:
            raise ValueError("truth buffer must be [batch, 90, 5]")
        if truth.shape[2] != PDL_TRUTH_SIZE:
            raise ValueError("truth buffer must be [batch, 90, 5]")
        truth_ptr = &truth[0, 0, 0]

    with nogil:
        status = pdl_forward(&p, &logits[0, 0, 0, 0], truth_ptr,
                             &output[0, 0, 0, 0], &delta[0, 0, 0, 0],
                             &cost, &stats)

    if status != PDL_OK:
        error, message = _ERRORS.get(status, (RuntimeError, f"status {status}"))
        raise error(f"pdl_forward failed: {message}")
    if truth is None:
        return None, None
    return cost, (stats.region, stats.avg_iou, stats.avg_class, stats.avg_obj,
                  stats.avg_no_obj, stats.recall50, stats.recall75, stats.count)

# Declarations of the project's C glue (darknet_src/glue/pdl_glue.h).

cdef extern from "pdl_glue.h" nogil:
    enum:
        PDL_TRUTH_ROWS
        PDL_TRUTH_SIZE
        PDL_OK
        PDL_EINVAL
        PDL_ENOMEM
        PDL_EREPORT
        PDL_ENODEVICE
        PDL_ECUDA
        PDL_ENOTDEVICE

    ctypedef struct pdl_params:
        int batch
        int w
        int h
        int n
        int total
        int classes
        const int *mask
        const float *anchors
        int net_w
        int net_h
        float ignore_thresh
        float truth_thresh
        int max_boxes
        int train
        int index

    ctypedef struct pdl_stats:
        int region
        float avg_iou
        float avg_class
        float avg_obj
        float avg_no_obj
        float recall50
        float recall75
        int count

    int pdl_forward(const pdl_params *params, const float *input,
                    const float *truth, float *output, float *delta,
                    float *cost, pdl_stats *stats)

    # GPU builds only (darknet_src/glue/pdl_cuda.c).
    int pdl_forward_device(const pdl_params *params, const float *input_gpu,
                           const float *truth, float *output, float *delta,
                           float *cost, pdl_stats *stats)
    int pdl_cuda_device_count()
    const char *pdl_cuda_error()

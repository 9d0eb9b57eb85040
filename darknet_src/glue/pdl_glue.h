/*
 * Flat C interface of the project's glue around upstream yolo_layer.c.
 *
 * The caller owns every buffer and passes its size through pdl_params,
 * in the style of numpy's random fill functions: nothing allocated here
 * outlives a call.  The Python side checks every value that upstream
 * code indexes with before it calls in; pdl_forward repeats only the
 * cheap structural checks.
 */
#ifndef PDL_GLUE_H
#define PDL_GLUE_H

/* Truth rows per image that upstream make_yolo_layer sets (l.truths). */
#define PDL_TRUTH_ROWS 90
#define PDL_TRUTH_SIZE 5

typedef struct {
    int batch;
    int w;
    int h;
    int n;              /* anchors of this layer: the length of mask */
    int total;          /* anchors in the whole network */
    int classes;
    const int *mask;    /* n entries in [0, total) */
    const float *anchors;   /* total (w, h) pairs, in network pixels */
    int net_w;
    int net_h;
    float ignore_thresh;
    float truth_thresh;
    int max_boxes;
    int train;
    int index;          /* net.index, printed as "Region %d" */
} pdl_params;

/* The values of upstream's "Region ..." line, in its order. */
typedef struct {
    int region;
    float avg_iou;
    float avg_class;
    float avg_obj;
    float avg_no_obj;
    float recall50;
    float recall75;
    int count;
} pdl_stats;

enum {
    PDL_OK = 0,
    PDL_EINVAL = 1,     /* a size or index out of range */
    PDL_ENOMEM = 2,     /* upstream allocation failed */
    PDL_EREPORT = 3,    /* the statistics line had an unexpected shape */
    PDL_ENODEVICE = 4,  /* no CUDA device (GPU builds only) */
    PDL_ECUDA = 5,      /* a CUDA runtime call failed: see pdl_cuda_error */
    PDL_ENOTDEVICE = 6  /* an input pointer is not CUDA device memory */
};

/*
 * Run upstream forward_yolo_layer on batch images.
 *
 * input, output and delta contain batch * n * (5 + classes) * h * w
 * floats.  truth contains batch * PDL_TRUTH_ROWS * PDL_TRUTH_SIZE floats
 * and may be NULL when train is 0.  input and truth are only read.
 */
int pdl_forward(const pdl_params *params, const float *input,
                const float *truth, float *output, float *delta,
                float *cost, pdl_stats *stats);

/*
 * GPU builds only (-DGPU): pdl_forward copies input to the device and runs
 * upstream forward_yolo_layer_gpu.  pdl_forward_device reads input_gpu, a
 * pointer to device memory, in place.  Both check for a device before any
 * upstream CUDA code runs, because upstream's check_error ends the process
 * on any CUDA failure.
 */
int pdl_forward_device(const pdl_params *params, const float *input_gpu,
                       const float *truth, float *output, float *delta,
                       float *cost, pdl_stats *stats);

/* Return the number of CUDA devices, or -1 with pdl_cuda_error set. */
int pdl_cuda_device_count(void);

/* Return the calling thread's last CUDA error message, or "". */
const char *pdl_cuda_error(void);

#endif

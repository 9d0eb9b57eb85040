/*
 * Named-backend glue for pjreddie-flavoured trees: network passed by
 * value, the seven-argument make_yolo_layer and 90 truth rows of 5
 * values.  It wraps pdl_forward from pdl_glue.c.
 */
#include "pdl_fork.h"

/* The options parse_yolo reads besides classes, num, mask, anchors, max. */
static const pdl_option options[] = {
    {"ignore_thresh", 0.5, 0},
    {"truth_thresh", 1.0, 0},
    {"jitter", 0.2, 0},     /* read by the parser, not used by forward */
    {"random", 0.0, 0},     /* read by the parser, not used by forward */
};

#define N_OPTIONS ((int)(sizeof(options) / sizeof(options[0])))

int pdl_system(const char *command)
{
    (void)command;
    return -1;
}

int pdl_fork_api(void) { return PDL_FORK_API; }
const char *pdl_fork_flavour(void) { return "pjreddie"; }
int pdl_fork_truth_size(void) { return PDL_TRUTH_SIZE; }
int pdl_fork_truth_rows(void) { return PDL_TRUTH_ROWS; }
int pdl_fork_default_max_boxes(void) { return PDL_TRUTH_ROWS; }

int pdl_fork_options(const pdl_option **table)
{
    *table = options;
    return N_OPTIONS;
}

int pdl_fork_forward(const pdl_params *params, const double *values,
                     const float *input, const float *truth, float *output,
                     float *delta, float *cost, pdl_stats *stats, int *has_stats)
{
    pdl_params p = *params;
    int status;

    p.ignore_thresh = (float)values[0];
    p.truth_thresh = (float)values[1];
    status = pdl_forward(&p, input, truth, output, delta, cost, stats);
    *has_stats = status == PDL_OK && p.train;
    return status;
}

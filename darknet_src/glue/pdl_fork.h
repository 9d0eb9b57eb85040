/*
 * Flat C interface of a named backend: a fork's YOLO layer built into
 * its own shared library with one of the project's flavour glues.
 *
 * Only the pdl_fork_ functions are exported (hidden visibility and a
 * linker version script), so several backends and the reference module
 * can be loaded into one process without their Darknet symbols meeting.
 */
#ifndef PDL_FORK_H
#define PDL_FORK_H

#include "pdl_glue.h"

#define PDL_EXPORT __attribute__((visibility("default")))

/* Version of this interface; the Python loader rejects any other. */
#define PDL_FORK_API 1

/*
 * One [yolo] option that the flavour's parser reads.  choices is NULL
 * for a number.  Otherwise it lists the accepted words, comma-separated,
 * and the option's value is the index of a word in that list.
 */
typedef struct {
    const char *name;
    double value;           /* the parser's default */
    const char *choices;
} pdl_option;

PDL_EXPORT int pdl_fork_api(void);
PDL_EXPORT const char *pdl_fork_flavour(void);

/* Values per truth row, and rows per image (0: the caller's max_boxes). */
PDL_EXPORT int pdl_fork_truth_size(void);
PDL_EXPORT int pdl_fork_truth_rows(void);

/* Default of the cfg option max, the truth rows read per image. */
PDL_EXPORT int pdl_fork_default_max_boxes(void);

/* Store the option table's address in *table; return its length. */
PDL_EXPORT int pdl_fork_options(const pdl_option **table);

/*
 * Run the fork's forward_yolo_layer on batch images.
 *
 * values contains one number per option, in the table's order.  The
 * ignore_thresh and truth_thresh fields of params are not read.  truth
 * contains batch * rows * truth_size floats, where rows is
 * pdl_fork_truth_rows() or, when that is 0, params->max_boxes.
 * *has_stats is set to 1 when stats were filled.
 */
PDL_EXPORT int pdl_fork_forward(const pdl_params *params, const double *values,
                                const float *input, const float *truth,
                                float *output, float *delta, float *cost,
                                pdl_stats *stats, int *has_stats);

#endif

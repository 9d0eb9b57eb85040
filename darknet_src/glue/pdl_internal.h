/*
 * Helpers that pdl_glue.c shares with pdl_cuda.c, the GPU build's forward.
 */
#ifndef PDL_INTERNAL_H
#define PDL_INTERNAL_H

#include "darknet.h"

#include "pdl_glue.h"
#include "pdl_report.h"

/* The buffers make_yolo_layer allocated, set aside for the caller's. */
typedef struct {
    float *output;
    float *delta;
    float *cost;
} pdl_owned;

/* Return 1 when the sizes and indices in p are safe for upstream code. */
int pdl_valid_params(const pdl_params *p);

/*
 * Point a layer from make_yolo_layer at the caller's output, delta and
 * cost, and set the anchors and options as parse_yolo does.  Return
 * PDL_ENOMEM when make_yolo_layer failed to allocate.  Either way, free
 * the layer with pdl_free_layer.
 */
int pdl_adopt_buffers(layer *l, const pdl_params *p, float *output,
                      float *delta, float *cost, pdl_owned *owned);

void pdl_free_layer(layer *l, pdl_owned *owned);

/* Return the network fields that forward_yolo_layer reads. */
network pdl_make_network(const pdl_params *p, float *input,
                         const float *truth);

/* Copy the captured statistics line and the cost out, in training mode. */
int pdl_take_report(const pdl_params *p, const pdl_report *report,
                    float layer_cost, float *cost, pdl_stats *stats);

#endif

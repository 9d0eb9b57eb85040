#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "darknet.h"
#include "yolo_layer.h"

#include "pdl_glue.h"
#include "pdl_report.h"
#include "pdl_internal.h"

int pdl_valid_params(const pdl_params *p)
{
    long long outputs;
    int i;

    if (p->batch < 1 || p->w < 1 || p->h < 1 || p->n < 1) return 0;
    /* n may exceed total: Darknet accepts a mask that repeats an anchor */
    if (p->classes < 1 || p->total < 1 || p->net_w < 1 || p->net_h < 1)
        return 0;
    if (p->max_boxes < 0 || p->max_boxes > PDL_TRUTH_ROWS) return 0;
    if (!p->mask || !p->anchors) return 0;
    for (i = 0; i < p->n; ++i) {
        if (p->mask[i] < 0 || p->mask[i] >= p->total) return 0;
    }

    /* upstream indexes with int: batch * outputs must fit */
    outputs = (long long)p->w * p->h * p->n * ((long long)p->classes + 5);
    return outputs * p->batch <= INT_MAX;
}

void pdl_read_stats(const pdl_report *report, pdl_stats *stats)
{
    stats->region = (int)report->values[0];
    stats->avg_iou = (float)report->values[1];
    stats->avg_class = (float)report->values[2];
    stats->avg_obj = (float)report->values[3];
    stats->avg_no_obj = (float)report->values[4];
    stats->recall50 = (float)report->values[5];
    stats->recall75 = (float)report->values[6];
    stats->count = (int)report->values[7];
}

int pdl_adopt_buffers(layer *l, const pdl_params *p, float *output,
                      float *delta, float *cost, pdl_owned *owned)
{
    int i;

    owned->output = l->output;
    owned->delta = l->delta;
    owned->cost = l->cost;
    if (!l->biases || !owned->output || !owned->delta || !owned->cost)
        return PDL_ENOMEM;

    for (i = 0; i < 2 * p->total; ++i) l->biases[i] = p->anchors[i];
    l->batch = p->batch;
    l->max_boxes = p->max_boxes;
    l->ignore_thresh = p->ignore_thresh;
    l->truth_thresh = p->truth_thresh;
    l->output = output;
    l->delta = delta;
    l->cost = cost;
    return PDL_OK;
}

void pdl_free_layer(layer *l, pdl_owned *owned)
{
    free(l->biases);
    free(l->bias_updates);
    free(owned->output);
    free(owned->delta);
    free(owned->cost);
}

network pdl_make_network(const pdl_params *p, float *input,
                         const float *truth)
{
    network net;

    memset(&net, 0, sizeof(net));
    net.input = input;
    net.truth = (float *)truth;
    net.train = p->train;
    net.w = p->net_w;
    net.h = p->net_h;
    net.index = p->index;
    return net;
}

int pdl_take_report(const pdl_params *p, const pdl_report *report,
                    float layer_cost, float *cost, pdl_stats *stats)
{
    if (!p->train) return PDL_OK;
    if (report->n_lines != 1 || report->n_values != 8) return PDL_EREPORT;
    *cost = layer_cost;
    pdl_read_stats(report, stats);
    return PDL_OK;
}

/* A -DGPU build gets pdl_forward from pdl_cuda.c: its forward_yolo_layer skips
 * the logistic activation that forward_yolo_layer_gpu runs on the device. */
#ifndef GPU
int pdl_forward(const pdl_params *p, const float *input, const float *truth,
                float *output, float *delta, float *cost, pdl_stats *stats)
{
    layer l;
    network net;
    pdl_owned owned;
    float layer_cost = 0;
    pdl_report report;
    int status;

    if (!pdl_valid_params(p) || (p->train && !truth)) return PDL_EINVAL;

    /*
     * Build the layer the way parse_yolo does, for one image so that its
     * own buffers stay small, then point it at the caller's buffers:
     * upstream writes output, delta and cost in place.
     */
    l = make_yolo_layer(1, p->w, p->h, p->n, p->total, (int *)p->mask,
                        p->classes);
    status = pdl_adopt_buffers(&l, p, output, delta, &layer_cost, &owned);
    if (status != PDL_OK) {
        pdl_free_layer(&l, &owned);
        return status;
    }
    net = pdl_make_network(p, (float *)input, truth);

    memset(&report, 0, sizeof(report));
    pdl_capture(&report);
    forward_yolo_layer(l, net);
    pdl_capture(NULL);

    pdl_free_layer(&l, &owned);
    return pdl_take_report(p, &report, layer_cost, cost, stats);
}
#endif

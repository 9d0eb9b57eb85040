/*
 * Named-backend glue for AlexeyAB-flavoured trees: network_state,
 * make_yolo_layer with max_boxes, truth rows of 5 or 6 values.
 *
 * The build defines PDL_HAS_<field> for every option field it finds in
 * the tree's struct layer, PDL_HAS_NET_<field> for the network fields
 * below, PDL_HAS_<constant> for the newer IOU_LOSS and NMS_KIND values,
 * and PDL_TRUTH_VALUES, so one glue fits trees of several years.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "darknet.h"
#include "yolo_layer.h"

#include "pdl_fork.h"
#include "pdl_report.h"

#ifndef PDL_TRUTH_VALUES
#define PDL_TRUTH_VALUES 6
#endif

#ifdef PDL_HAS_CIOU
static const int iou_loss_codes[] = {MSE, IOU, GIOU, DIOU, CIOU};
#define IOU_LOSS_CHOICES "mse,iou,giou,diou,ciou"
#define IOU_KIND_CHOICES "iou,giou,diou,ciou"
static const int iou_kind_codes[] = {IOU, GIOU, DIOU, CIOU};
#else
static const int iou_loss_codes[] = {MSE, IOU, GIOU};
#define IOU_LOSS_CHOICES "mse,iou,giou"
#define IOU_KIND_CHOICES "iou,giou"
static const int iou_kind_codes[] = {IOU, GIOU};
#endif

#ifdef PDL_HAS_DIOU_NMS
static const int nms_codes[] = {DEFAULT_NMS, GREEDY_NMS, DIOU_NMS};
#define NMS_CHOICES "default,greedynms,diounms"
#endif

/*
 * Record each option's default in table, or, when table is NULL, copy
 * values into the layer.  One walk serves both so that the order of the
 * table and of the values cannot drift apart.  Defaults are parse_yolo's:
 * make_yolo_layer leaves these fields at zero, and several zeros break
 * the loss (scale_x_y 0 pins x and y at 0.5, max_delta 0 clips every
 * delta to 0, iou_thresh 0 makes every anchor responsible).
 */
#define NUMBER(field, fallback, type) do {                              \
        if (table) {                                                    \
            table[k].name = #field;                                     \
            table[k].value = (fallback);                                \
            table[k].choices = 0;                                       \
        } else {                                                        \
            l->field = (type)values[k];                                 \
        }                                                               \
        ++k;                                                            \
    } while (0)

#define CHOICE(field, fallback, words, codes) do {                      \
        if (table) {                                                    \
            table[k].name = #field;                                     \
            table[k].value = (fallback);                                \
            table[k].choices = (words);                                 \
        } else {                                                        \
            l->field = (codes)[(int)values[k]];                         \
        }                                                               \
        ++k;                                                            \
    } while (0)

static int walk_options(layer *l, const double *values, pdl_option *table)
{
    int k = 0;

    NUMBER(ignore_thresh, 0.5, float);
    NUMBER(truth_thresh, 1.0, float);
#ifdef PDL_HAS_iou_thresh
    NUMBER(iou_thresh, 1.0, float);
#endif
#ifdef PDL_HAS_iou_normalizer
    NUMBER(iou_normalizer, 0.75, float);
#endif
#ifdef PDL_HAS_obj_normalizer
    NUMBER(obj_normalizer, 1.0, float);
#endif
#ifdef PDL_HAS_cls_normalizer
    NUMBER(cls_normalizer, 1.0, float);
#endif
#ifdef PDL_HAS_delta_normalizer
    NUMBER(delta_normalizer, 1.0, float);
#endif
#ifdef PDL_HAS_scale_x_y
    NUMBER(scale_x_y, 1.0, float);
#endif
#ifdef PDL_HAS_max_delta
    NUMBER(max_delta, FLT_MAX, float);
#endif
#ifdef PDL_HAS_label_smooth_eps
    NUMBER(label_smooth_eps, 0.0, float);
#endif
#ifdef PDL_HAS_focal_loss
    NUMBER(focal_loss, 0, int);
#endif
#ifdef PDL_HAS_objectness_smooth
    NUMBER(objectness_smooth, 0, int);
#endif
#ifdef PDL_HAS_new_coords
    NUMBER(new_coords, 0, int);
#endif
#ifdef PDL_HAS_iou_loss
    CHOICE(iou_loss, 0, IOU_LOSS_CHOICES, iou_loss_codes);
#endif
#ifdef PDL_HAS_iou_thresh_kind
    CHOICE(iou_thresh_kind, 0, IOU_KIND_CHOICES, iou_kind_codes);
#endif
#ifdef PDL_HAS_show_details
    NUMBER(show_details, 1, int);
#endif
    /* Read by the parser for inference, tracking or data loading only. */
#if defined(PDL_HAS_nms_kind) && defined(PDL_HAS_DIOU_NMS)
    CHOICE(nms_kind, 0, NMS_CHOICES, nms_codes);
#endif
#ifdef PDL_HAS_beta_nms
    NUMBER(beta_nms, 0.6, float);
#endif
#ifdef PDL_HAS_jitter
    NUMBER(jitter, 0.2, float);
#endif
#ifdef PDL_HAS_resize
    NUMBER(resize, 1.0, float);
#endif
#ifdef PDL_HAS_random
    NUMBER(random, 0.0, float);
#endif
#ifdef PDL_HAS_track_history_size
    NUMBER(track_history_size, 5, int);
#endif
#ifdef PDL_HAS_sim_thresh
    NUMBER(sim_thresh, 0.8, float);
#endif
#ifdef PDL_HAS_dets_for_track
    NUMBER(dets_for_track, 1, int);
#endif
#ifdef PDL_HAS_dets_for_show
    NUMBER(dets_for_show, 1, int);
#endif
#ifdef PDL_HAS_track_ciou_norm
    NUMBER(track_ciou_norm, 0.01, float);
#endif
    return k;
}

/* Large enough for every option above. */
static pdl_option options[40];
static int n_options = -1;

/*
 * Stand-in for network.c's get_current_iteration, whose unit would pull
 * in every layer type.  Iteration 0 keeps the bad-label rejection and
 * equidistant-point steps of forward_yolo_layer off, as at the start of
 * training.
 */
int64_t get_current_iteration(network net)
{
    (void)net;
    return 0;
}

int pdl_system(const char *command)
{
    (void)command;
    return -1;
}

int pdl_fork_api(void) { return PDL_FORK_API; }
const char *pdl_fork_flavour(void) { return "alexeyab"; }
int pdl_fork_truth_size(void) { return PDL_TRUTH_VALUES; }
int pdl_fork_truth_rows(void) { return 0; }
int pdl_fork_default_max_boxes(void) { return 200; }

int pdl_fork_options(const pdl_option **table)
{
    /* The table is constant once filled; Python fills it at load time. */
    if (n_options < 0) n_options = walk_options(NULL, NULL, options);
    *table = options;
    return n_options;
}

/* Store in *field the value labelled label, or NaN when the line has none. */
static void read_float(const pdl_report *report, const char *label, float *field)
{
    double value;
    *field = pdl_report_find(report, label, &value) ? (float)value : NAN;
}

/*
 * Fill stats from the layer's statistics line.  AlexeyAB's current line
 * is "v3 (mse loss, Normalizer: (...) Region %d Avg (IOU: %f), count: %d,
 * ..." on stderr.  It has no class, objectness or recall values, so those
 * fields are NaN.  When no truth was matched the fork prints count 1 and
 * IOU 0, where pjreddie prints 0 and nan, and stats keep its values.  Values
 * are found by their labels, so the older shape kept commented out in
 * the fork's source ("Class: %f, Obj: %f, No Obj: %f, .5R: %f, ...")
 * fills every field.  Return 0 when the line has no region or count.
 *
 * NOTE: the older shape is read by the same label search but has not
 * been run against an old tree.
 */
static int read_stats(const pdl_report *report, pdl_stats *stats)
{
    double region;
    double count;

    if (!pdl_report_find(report, "Region ", &region)) return 0;
    if (!pdl_report_find(report, "count: ", &count)) return 0;
    stats->region = (int)region;
    stats->count = (int)count;
    read_float(report, "IOU: ", &stats->avg_iou);
    read_float(report, "Class: ", &stats->avg_class);
    read_float(report, "Obj: ", &stats->avg_obj);
    read_float(report, "No Obj: ", &stats->avg_no_obj);
    read_float(report, ".5R: ", &stats->recall50);
    read_float(report, ".75R: ", &stats->recall75);
    return 1;
}

static int valid(const pdl_params *p)
{
    long long outputs;
    int i;

    if (p->batch < 1 || p->w < 1 || p->h < 1 || p->n < 1) return 0;
    if (p->classes < 1 || p->total < p->n || p->max_boxes < 1) return 0;
    if (p->net_w < 1 || p->net_h < 1 || !p->mask || !p->anchors) return 0;
    for (i = 0; i < p->n; ++i) {
        if (p->mask[i] < 0 || p->mask[i] >= p->total) return 0;
    }
    outputs = (long long)p->w * p->h * p->n * (p->classes + 5);
    return outputs * p->batch <= 0x7fffffff;
}

int pdl_fork_forward(const pdl_params *p, const double *values,
                     const float *input, const float *truth, float *output,
                     float *delta, float *cost, pdl_stats *stats, int *has_stats)
{
    layer l;
    network_state state;
    float *own_output;
    float *own_delta;
    float *own_cost;
    float layer_cost = 0;
    int total_bbox = 0;
    int rewritten_bbox = 0;
    pdl_report report;
    int i;

    *has_stats = 0;
    if (!valid(p) || (p->train && !truth)) return PDL_EINVAL;

    /*
     * This flavour's layer keeps per-image label buffers, so it is made
     * for the whole batch.  Its own output and delta are set aside for
     * the caller's buffers, which forward writes in place.
     */
    l = make_yolo_layer(p->batch, p->w, p->h, p->n, p->total, (int *)p->mask,
                        p->classes, p->max_boxes);
    own_output = l.output;
    own_delta = l.delta;
    own_cost = l.cost;
    for (i = 0; i < 2 * p->total; ++i) l.biases[i] = p->anchors[i];
    walk_options(&l, values, NULL);
    l.output = output;
    l.delta = delta;
    l.cost = &layer_cost;

    memset(&state, 0, sizeof(state));
    state.net.w = p->net_w;
    state.net.h = p->net_h;
#ifdef PDL_HAS_NET_total_bbox
    state.net.total_bbox = &total_bbox;
#endif
#ifdef PDL_HAS_NET_rewritten_bbox
    state.net.rewritten_bbox = &rewritten_bbox;
#endif
    state.input = (float *)input;
    state.truth = (float *)truth;
    state.train = p->train;
    state.index = p->index;

    memset(&report, 0, sizeof(report));
    pdl_capture(&report);
    forward_yolo_layer(l, state);
    pdl_capture(NULL);

    free(l.biases);
    free(l.bias_updates);
#ifdef PDL_HAS_labels
    free(l.labels);
#endif
#ifdef PDL_HAS_class_ids
    free(l.class_ids);
#endif
    free(own_output);
    free(own_delta);
    free(own_cost);

    (void)total_bbox;
    (void)rewritten_bbox;
    if (!p->train) return PDL_OK;
    *cost = layer_cost;
    if (!read_stats(&report, stats)) return PDL_EREPORT;
    *has_stats = 1;
    return PDL_OK;
}

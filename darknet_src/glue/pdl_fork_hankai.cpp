/*
 * Named-backend glue for hank-ai-flavoured trees (src-lib/yolo_layer.cpp,
 * C++17): Darknet::Layer, Darknet::NetworkState, make_yolo_layer with
 * max_boxes and truth rows of 6 values.  The loss is AlexeyAB's.
 *
 * Compiled as C++ against the tree's darknet_internal.hpp, which needs
 * OpenCV's headers.  The stand-ins at the end replace functions whose
 * own units would pull in most of the library.
 */
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <streambuf>
#include <string>

#include "darknet_internal.hpp"
#include "yolo_layer.hpp"

extern "C" {
#include "pdl_fork.h"
}

namespace {

const int TRUTH_VALUES = 6;

const IOU_LOSS iou_loss_codes[] = {MSE, IOU, GIOU, DIOU, CIOU};
const IOU_LOSS iou_kind_codes[] = {IOU, GIOU, DIOU, CIOU};
const NMS_KIND nms_codes[] = {DEFAULT_NMS, GREEDY_NMS, DIOU_NMS, CORNERS_NMS};

/*
 * The options that Darknet::CfgFile::parse_yolo_section reads besides
 * classes, num, mask, anchors and max, with its defaults.
 * make_yolo_layer leaves these fields at zero, and several zeros break
 * the loss (scale_x_y 0 pins x and y at 0.5, max_delta 0 clips every
 * delta to 0, iou_thresh 0 makes every anchor responsible).  The parser
 * sets show_details from --verbose, not from the cfg, and forward does
 * not read it, so it is not an option here.
 */
const pdl_option options[] = {
    {"ignore_thresh", 0.5, nullptr},
    {"truth_thresh", 1.0, nullptr},
    {"iou_thresh", 1.0, nullptr},
    {"iou_normalizer", 0.75, nullptr},
    {"obj_normalizer", 1.0, nullptr},
    {"cls_normalizer", 1.0, nullptr},
    {"delta_normalizer", 1.0, nullptr},
    {"scale_x_y", 1.0, nullptr},
    {"max_delta", FLT_MAX, nullptr},
    {"label_smooth_eps", 0.0, nullptr},
    {"focal_loss", 0, nullptr},
    {"objectness_smooth", 0, nullptr},
    {"new_coords", 0, nullptr},
    {"iou_loss", 0, "mse,iou,giou,diou,ciou"},
    {"iou_thresh_kind", 0, "iou,giou,diou,ciou"},
    /* Read by the parser for inference, tracking or data loading only. */
    {"nms_kind", 0, "default,greedynms,diounms,cornersnms"},
    {"beta_nms", 0.6, nullptr},
    {"jitter", 0.2, nullptr},
    {"resize", 1.0, nullptr},
    {"random", 0.0, nullptr},
    {"track_history_size", 5, nullptr},
    {"sim_thresh", 0.8, nullptr},
    {"dets_for_track", 1, nullptr},
    {"dets_for_show", 1, nullptr},
    {"track_ciou_norm", 0.01, nullptr},
};

const int n_options = static_cast<int>(sizeof(options) / sizeof(options[0]));

/* Copy values, in the order of the options table, into the layer. */
void set_options(Darknet::Layer &l, const double *v)
{
    int k = 0;

    l.ignore_thresh = static_cast<float>(v[k++]);
    l.truth_thresh = static_cast<float>(v[k++]);
    l.iou_thresh = static_cast<float>(v[k++]);
    l.iou_normalizer = static_cast<float>(v[k++]);
    l.obj_normalizer = static_cast<float>(v[k++]);
    l.cls_normalizer = static_cast<float>(v[k++]);
    l.delta_normalizer = static_cast<float>(v[k++]);
    l.scale_x_y = static_cast<float>(v[k++]);
    l.max_delta = static_cast<float>(v[k++]);
    l.label_smooth_eps = static_cast<float>(v[k++]);
    l.focal_loss = static_cast<int>(v[k++]);
    l.objectness_smooth = static_cast<int>(v[k++]);
    l.new_coords = static_cast<int>(v[k++]);
    l.iou_loss = iou_loss_codes[static_cast<int>(v[k++])];
    l.iou_thresh_kind = iou_kind_codes[static_cast<int>(v[k++])];
    l.nms_kind = nms_codes[static_cast<int>(v[k++])];
    l.beta_nms = static_cast<float>(v[k++]);
    l.jitter = static_cast<float>(v[k++]);
    l.resize = static_cast<float>(v[k++]);
    l.random = static_cast<float>(v[k++]);
    l.track_history_size = static_cast<int>(v[k++]);
    l.sim_thresh = static_cast<float>(v[k++]);
    l.dets_for_track = static_cast<int>(v[k++]);
    l.dets_for_show = static_cast<int>(v[k++]);
    l.track_ciou_norm = static_cast<float>(v[k++]);
}

/*
 * Stream buffer that appends to the calling thread's string.  The layer
 * writes its statistics line to CfgAndState::output, one pointer for the
 * whole library, after it has joined its per-image threads.  A
 * thread-local target keeps concurrent forward calls apart.
 */
thread_local std::string *captured = nullptr;

class CaptureBuffer : public std::streambuf {
protected:
    int_type overflow(int_type ch) override
    {
        if (captured && !traits_type::eq_int_type(ch, traits_type::eof())) {
            captured->push_back(traits_type::to_char_type(ch));
        }
        return traits_type::not_eof(ch);
    }

    std::streamsize xsputn(const char *text, std::streamsize count) override
    {
        if (captured) captured->append(text, static_cast<size_t>(count));
        return count;
    }
};

CaptureBuffer capture_buffer;
std::ostream capture_stream(&capture_buffer);
std::once_flag capture_once;

/*
 * Point the library's output at the capture stream and turn on the
 * layer's statistics line, which it writes only when verbose.
 * hexfloat makes the stream ignore the line's setprecision(6), so every
 * float reads back exactly.
 */
void install_capture()
{
    Darknet::CfgAndState &cfg = Darknet::CfgAndState::get();
    capture_stream << std::hexfloat;
    cfg.output = &capture_stream;
    cfg.is_verbose = true;
}

/* Store the number that follows label in line into value. */
bool read_number(const std::string &line, const char *label, double *value)
{
    size_t at = line.find(label);
    if (at == std::string::npos) return false;
    const char *start = line.c_str() + at + std::strlen(label);
    char *end = nullptr;
    *value = std::strtod(start, &end);
    return end != start;
}

/*
 * Fill stats from the layer's line, "v3 mse loss, Normalizer: (...)
 * Region %d Avg (IOU: %f), count: %d, class_loss: %f, iou_loss: %f,
 * total_loss: %f".  The line has no class, objectness or recall values,
 * so those fields are NaN.
 */
bool read_stats(const std::string &line, pdl_stats *stats)
{
    double region = 0;
    double avg_iou = 0;
    double count = 0;

    if (!read_number(line, "Region ", &region) || !read_number(line, "IOU: ", &avg_iou)
        || !read_number(line, "count: ", &count)) {
        return false;
    }
    stats->region = static_cast<int>(region);
    stats->avg_iou = static_cast<float>(avg_iou);
    stats->avg_class = NAN;
    stats->avg_obj = NAN;
    stats->avg_no_obj = NAN;
    stats->recall50 = NAN;
    stats->recall75 = NAN;
    stats->count = static_cast<int>(count);
    return true;
}

bool valid(const pdl_params *p)
{
    if (p->batch < 1 || p->w < 1 || p->h < 1 || p->n < 1) return false;
    if (p->classes < 1 || p->total < p->n || p->max_boxes < 1) return false;
    if (p->net_w < 1 || p->net_h < 1 || !p->mask || !p->anchors) return false;
    for (int i = 0; i < p->n; ++i) {
        if (p->mask[i] < 0 || p->mask[i] >= p->total) return false;
    }
    long long outputs = static_cast<long long>(p->w) * p->h * p->n * (p->classes + 5);
    return outputs * p->batch <= 0x7fffffff;
}

}  // namespace

/*
 * Stand-ins for functions whose units would pull in the whole network,
 * the command line and the version report.  Iteration 0 keeps the
 * bad-label rejection and equidistant-point steps of forward_yolo_layer
 * off, as at the start of training.  The other three are reached only
 * from command-line handling, which the backend never runs.
 */
int64_t get_current_iteration(const Darknet::Network &)
{
    return 0;
}

void Darknet::show_version_info()
{
}

std::ostream *Darknet::set_output_stream(const std::filesystem::path &)
{
    return Darknet::CfgAndState::get().output;
}

std::string Darknet::format_duration_string(std::chrono::high_resolution_clock::duration,
                                            const int, const uint32_t)
{
    return std::string();
}

/* Stand-in for std::setlocale in darknet_cfg_and_state.cpp: see the shim. */
extern "C" char *pdl_setlocale(int, const char *)
{
    return nullptr;
}

extern "C" {

int pdl_fork_api(void) { return PDL_FORK_API; }
const char *pdl_fork_flavour(void) { return "hankai"; }
int pdl_fork_truth_size(void) { return TRUTH_VALUES; }
int pdl_fork_truth_rows(void) { return 0; }
int pdl_fork_default_max_boxes(void) { return 200; }

int pdl_fork_options(const pdl_option **table)
{
    *table = options;
    return n_options;
}

int pdl_fork_forward(const pdl_params *p, const double *values, const float *input,
                     const float *truth, float *output, float *delta, float *cost,
                     pdl_stats *stats, int *has_stats)
{
    *has_stats = 0;
    if (!valid(p) || (p->train && !truth)) return PDL_EINVAL;
    std::call_once(capture_once, install_capture);

    /*
     * The layer keeps per-image label buffers, so it is made for the
     * whole batch.  Its own output and delta are set aside for the
     * caller's buffers, which forward writes in place.
     */
    Darknet::Layer l = make_yolo_layer(p->batch, p->w, p->h, p->n, p->total,
                                       const_cast<int *>(p->mask), p->classes,
                                       p->max_boxes);
    float *own_output = l.output;
    float *own_delta = l.delta;
    float *own_cost = l.cost;
    float layer_cost = 0;
    int total_bbox = 0;
    int rewritten_bbox = 0;

    for (int i = 0; i < 2 * p->total; ++i) l.biases[i] = p->anchors[i];
    set_options(l, values);
    l.output = output;
    l.delta = delta;
    l.cost = &layer_cost;

    Darknet::NetworkState state = {};
    state.net.w = p->net_w;
    state.net.h = p->net_h;
    state.net.total_bbox = &total_bbox;
    state.net.rewritten_bbox = &rewritten_bbox;
    state.input = const_cast<float *>(input);
    state.truth = const_cast<float *>(truth);
    state.train = p->train;
    state.index = p->index;

    std::string line;
    captured = &line;
    forward_yolo_layer(l, state);
    captured = nullptr;

    std::free(l.biases);
    std::free(l.bias_updates);
    std::free(l.labels);
    std::free(l.class_ids);
    std::free(own_output);
    std::free(own_delta);
    std::free(own_cost);

    if (!p->train) return PDL_OK;
    *cost = layer_cost;
    if (!read_stats(line, stats)) return PDL_EREPORT;
    *has_stats = 1;
    return PDL_OK;
}

}  // extern "C"

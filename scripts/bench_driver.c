/*
 * Time upstream forward_yolo_layer called from C, with no Python around it.
 *
 * scripts/benchmark.py compiles this file against the same upstream and
 * glue objects as the extension and compares its times with the binding's.
 * The layer is built as the glue builds it, but once: output and delta
 * are allocated by make_yolo_layer and reused by every repetition, as a
 * C training loop would reuse them.
 *
 * Usage: bench_driver GRID BATCH CLASSES NET REPEATS LOGITS TRUTH MASK ANCHORS
 * LOGITS and TRUTH are raw float32 files: [BATCH, n*(5+CLASSES), GRID, GRID]
 * and [BATCH, 90, 5].  MASK and ANCHORS are comma-separated lists.
 * Prints the median and minimum seconds of one forward pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "darknet.h"
#include "yolo_layer.h"

#include "pdl_glue.h"

#define MAX_ANCHORS 64

static int parse_list(const char *text, float *values, int max_count)
{
    int count = 0;
    char *end;

    while (*text && count < max_count) {
        values[count++] = strtof(text, &end);
        if (*end != ',') break;
        text = end + 1;
    }
    return count;
}

static float *read_floats(const char *path, size_t count)
{
    FILE *file = fopen(path, "rb");
    float *data = malloc(count * sizeof(float));

    if (!file || !data || fread(data, sizeof(float), count, file) != count) {
        fprintf(stderr, "bench_driver: cannot read %zu floats from %s\n", count, path);
        exit(2);
    }
    fclose(file);
    return data;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    float mask_values[MAX_ANCHORS];
    float anchors[2 * MAX_ANCHORS];
    int mask[MAX_ANCHORS];
    int grid, batch, classes, net_size, repeats, n, total, i;
    size_t outputs;
    double *seconds;
    float *input;
    float *truth;
    layer l;
    network net;

    if (argc != 10) {
        fprintf(stderr, "usage: bench_driver GRID BATCH CLASSES NET REPEATS "
                        "LOGITS TRUTH MASK ANCHORS\n");
        return 2;
    }
    grid = atoi(argv[1]);
    batch = atoi(argv[2]);
    classes = atoi(argv[3]);
    net_size = atoi(argv[4]);
    repeats = atoi(argv[5]);
    n = parse_list(argv[8], mask_values, MAX_ANCHORS);
    total = parse_list(argv[9], anchors, 2 * MAX_ANCHORS) / 2;
    for (i = 0; i < n; ++i) mask[i] = (int)mask_values[i];

    outputs = (size_t)grid * grid * n * (classes + 5);
    input = read_floats(argv[6], outputs * batch);
    truth = read_floats(argv[7], (size_t)batch * PDL_TRUTH_ROWS * PDL_TRUTH_SIZE);

    l = make_yolo_layer(batch, grid, grid, n, total, mask, classes);
    for (i = 0; i < 2 * total; ++i) l.biases[i] = anchors[i];
    l.max_boxes = PDL_TRUTH_ROWS;
    l.ignore_thresh = .5;
    l.truth_thresh = 1;

    memset(&net, 0, sizeof(net));
    net.input = input;
    net.truth = truth;
    net.train = 1;
    net.w = net_size;
    net.h = net_size;

    /* one untimed pass faults in output and delta, as reuse would */
    forward_yolo_layer(l, net);
    seconds = malloc(repeats * sizeof(double));
    for (i = 0; i < repeats; ++i) {
        double start = now();
        forward_yolo_layer(l, net);
        seconds[i] = now() - start;
    }
    qsort(seconds, repeats, sizeof(double), compare_doubles);
    printf("%.9f %.9f\n", seconds[repeats / 2], seconds[0]);
    return 0;
}

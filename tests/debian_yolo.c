/*
 * Run forward_yolo_layer from Debian's libdarknet.so on one case.
 *
 * Debian builds its darknet package from the same upstream commit with
 * the upstream Makefile, so this is an independent build of the code the
 * package compiles.  The input file contains, in order: int32 batch, w, h,
 * n, total, classes, net_w, net_h and max_boxes, float32 ignore_thresh
 * and truth_thresh, n int32 mask entries, 2*total float32 anchors, the
 * logits, and the truth (batch * 90 * 5).  Output file: output, delta, cost.  The statistics
 * line goes to stdout, as upstream prints it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "darknet.h"

layer make_yolo_layer(int batch, int w, int h, int n, int total, int *mask,
                      int classes);
void forward_yolo_layer(const layer l, network net);

static void read_all(FILE *f, void *data, size_t size, size_t count)
{
    if (fread(data, size, count, f) != count) {
        fprintf(stderr, "debian_yolo: short input\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    int head[9];
    float thresholds[2];
    FILE *in;
    FILE *out;
    layer l;
    network net = {0};
    int *mask;
    size_t size;

    if (argc != 3) {
        fprintf(stderr, "usage: debian_yolo INPUT OUTPUT\n");
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (!in || !out) {
        perror("debian_yolo");
        return 2;
    }
    read_all(in, head, sizeof(int), 9);
    read_all(in, thresholds, sizeof(float), 2);
    mask = calloc(head[3], sizeof(int));
    read_all(in, mask, sizeof(int), head[3]);

    l = make_yolo_layer(head[0], head[1], head[2], head[3], head[4], mask,
                        head[5]);
    read_all(in, l.biases, sizeof(float), 2 * head[4]);
    l.max_boxes = head[8];
    l.ignore_thresh = thresholds[0];
    l.truth_thresh = thresholds[1];

    size = (size_t)l.batch * l.outputs;
    net.input = calloc(size, sizeof(float));
    net.truth = calloc((size_t)l.batch * l.truths, sizeof(float));
    read_all(in, net.input, sizeof(float), size);
    read_all(in, net.truth, sizeof(float), (size_t)l.batch * l.truths);
    net.train = 1;
    net.w = head[6];
    net.h = head[7];

    forward_yolo_layer(l, net);

    fwrite(l.output, sizeof(float), size, out);
    fwrite(l.delta, sizeof(float), size, out);
    fwrite(l.cost, sizeof(float), 1, out);
    fclose(out);
    fclose(in);
    free(mask);
    return 0;
}

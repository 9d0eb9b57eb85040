/*
 * GPU build of the glue: runs upstream forward_yolo_layer_gpu.
 *
 * Compiled with -DGPU only.  Upstream's check_error asserts and exits on
 * any CUDA failure.  So every CUDA call that can fail for reasons outside
 * the project's control (no device, no driver, a foreign pointer, too
 * little memory) is made here first and reported as a status code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darknet.h"
#include "yolo_layer.h"

#include "pdl_glue.h"
#include "pdl_internal.h"
#include "pdl_report.h"

/* Room for the CUDA runtime's own allocations beside the layer's buffers. */
#define PDL_DEVICE_MARGIN (64u << 20)

static _Thread_local char last_error[200];

static int fail(const char *call, cudaError_t status)
{
    snprintf(last_error, sizeof(last_error), "%s failed: %s", call,
             cudaGetErrorString(status));

    /* Clear the error so that upstream's check_error does not see it. */
    (void)cudaGetLastError();
    return PDL_ECUDA;
}

const char *pdl_cuda_error(void)
{
    return last_error;
}

int pdl_cuda_device_count(void)
{
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);

    if (status != cudaSuccess) {
        fail("cudaGetDeviceCount", status);
        return -1;
    }
    if (count == 0) {
        snprintf(last_error, sizeof(last_error),
                 "cudaGetDeviceCount found 0 devices");
    }
    return count;
}

/* Return the device whose memory pointer is in, or -1 for host memory. */
static int device_of(const float *pointer, int *status)
{
    struct cudaPointerAttributes attributes;
    cudaError_t error = cudaPointerGetAttributes(&attributes, pointer);

    *status = PDL_OK;
    if (error != cudaSuccess) {
        *status = fail("cudaPointerGetAttributes", error);
        return -1;
    }
    if (attributes.type != cudaMemoryTypeDevice
        && attributes.type != cudaMemoryTypeManaged) {
        *status = PDL_ENOTDEVICE;
        return -1;
    }
    return attributes.device;
}

/* Check that the layer's device buffers fit before upstream allocates them. */
static int check_free_memory(size_t needed)
{
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    cudaError_t error = cudaMemGetInfo(&free_bytes, &total_bytes);

    if (error != cudaSuccess) return fail("cudaMemGetInfo", error);

    /*
     * NOTE: another thread or process can take the memory between this
     * check and upstream's cudaMalloc, which then ends the process.
     */
    if (free_bytes < needed + PDL_DEVICE_MARGIN) {
        snprintf(last_error, sizeof(last_error),
                 "the device has %zu bytes free, the layer needs %zu",
                 free_bytes, needed);
        return PDL_ECUDA;
    }
    return PDL_OK;
}

/* Run the layer with input_gpu on the current device. */
static int run_layer(const pdl_params *p, float *input_gpu, const float *truth,
                     float *output, float *delta, float *cost,
                     pdl_stats *stats, size_t count)
{
    layer l;
    network net;
    pdl_owned owned;
    float *scratch;
    float layer_cost = 0;
    pdl_report report;
    int status;

    /* forward_yolo_layer_gpu pulls the activated output into net.input. */
    scratch = malloc(count * sizeof(float));
    if (!scratch) return PDL_ENOMEM;

    /*
     * Build the layer with the real batch: under -DGPU make_yolo_layer
     * allocates output_gpu and delta_gpu for batch images, and upstream
     * cannot allocate an empty device array.
     */
    l = make_yolo_layer(p->batch, p->w, p->h, p->n, p->total, (int *)p->mask,
                        p->classes);
    status = pdl_adopt_buffers(&l, p, output, delta, &layer_cost, &owned);
    if (status == PDL_OK) {
        net = pdl_make_network(p, scratch, truth);
        net.input_gpu = input_gpu;

        memset(&report, 0, sizeof(report));
        pdl_capture(&report);
        forward_yolo_layer_gpu(l, net);
        pdl_capture(NULL);
        status = pdl_take_report(p, &report, layer_cost, cost, stats);
    }

    cudaFree(l.output_gpu);
    cudaFree(l.delta_gpu);
    pdl_free_layer(&l, &owned);
    free(scratch);
    return status;
}

static int forward_gpu(const pdl_params *p, const float *input, int on_device,
                       const float *truth, float *output, float *delta,
                       float *cost, pdl_stats *stats)
{
    size_t count;
    size_t bytes;
    float *input_gpu = NULL;
    int previous = 0;
    int device;
    int status;
    cudaError_t error;

    last_error[0] = '\0';
    if (!pdl_valid_params(p) || (p->train && !truth) || !input) return PDL_EINVAL;
    if (pdl_cuda_device_count() <= 0) return PDL_ENODEVICE;

    count = (size_t)p->batch * p->w * p->h * p->n * (p->classes + 5);
    bytes = count * sizeof(float);

    error = cudaGetDevice(&previous);
    if (error != cudaSuccess) return fail("cudaGetDevice", error);
    device = previous;
    if (on_device) {
        device = device_of(input, &status);
        if (status != PDL_OK) return status;
    }
    if (device != previous) {
        error = cudaSetDevice(device);
        if (error != cudaSuccess) return fail("cudaSetDevice", error);
    }

    /*
     * Upstream kernels run on the legacy default stream.  Waiting for the
     * whole device makes writes that the caller queued on any other stream
     * visible before the input is read.
     */
    error = on_device ? cudaDeviceSynchronize() : cudaSuccess;
    if (error != cudaSuccess) {
        status = fail("cudaDeviceSynchronize", error);
        goto done;
    }

    status = check_free_memory(on_device ? 2 * bytes : 3 * bytes);
    if (status != PDL_OK) goto done;

    if (on_device) {
        input_gpu = (float *)input;
    } else {
        error = cudaMalloc((void **)&input_gpu, bytes);
        if (error != cudaSuccess) {
            input_gpu = NULL;
            status = fail("cudaMalloc", error);
            goto done;
        }
        error = cudaMemcpy(input_gpu, input, bytes, cudaMemcpyHostToDevice);
        if (error != cudaSuccess) {
            status = fail("cudaMemcpy", error);
            goto done;
        }
    }

    /* A pending error of the caller's would make upstream's check_error exit. */
    (void)cudaGetLastError();
    status = run_layer(p, input_gpu, truth, output, delta, cost, stats, count);

done:
    if (!on_device && input_gpu) cudaFree(input_gpu);
    if (device != previous) cudaSetDevice(previous);
    return status;
}

int pdl_forward(const pdl_params *p, const float *input, const float *truth,
                float *output, float *delta, float *cost, pdl_stats *stats)
{
    return forward_gpu(p, input, 0, truth, output, delta, cost, stats);
}

int pdl_forward_device(const pdl_params *p, const float *input_gpu,
                       const float *truth, float *output, float *delta,
                       float *cost, pdl_stats *stats)
{
    return forward_gpu(p, input_gpu, 1, truth, output, delta, cost, stats);
}

/*
 * Forced include for upstream src/yolo_layer.c (gcc -include).
 *
 * The upstream layer prints a statistics line on stdout on every forward
 * pass, prints "yolo" on stderr and calls srand(0) in make_yolo_layer.
 * A library must not write to its caller's streams or reseed the
 * process's random generator, so these three calls are routed to the
 * project's glue, in this one file only, without editing upstream code.
 * The system headers come first so that their declarations are not
 * rewritten by the macros below.
 */
#ifndef PDL_SHIM_H
#define PDL_SHIM_H

#include <stdio.h>
#include <stdlib.h>

#include "pdl_report.h"

#define printf(...) pdl_printf(__VA_ARGS__)
#define fprintf(stream, ...) pdl_fprintf(stream, __VA_ARGS__)
#define srand(seed) pdl_srand(seed)

#endif

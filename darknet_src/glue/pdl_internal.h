/*
 * Helpers that pdl_glue.c shares with pdl_cuda.c, the GPU build's forward.
 */
#ifndef PDL_INTERNAL_H
#define PDL_INTERNAL_H

#include "pdl_glue.h"
#include "pdl_report.h"

/* Return 1 when the sizes and indices in p are safe for upstream code. */
int pdl_valid_params(const pdl_params *p);

void pdl_read_stats(const pdl_report *report, pdl_stats *stats);

#endif

/*
 * Capture of the values that upstream Darknet prints.
 *
 * pdl_printf stores every %d and %f argument of a formatted line in the
 * pdl_report that the calling thread installed with pdl_capture, in the
 * order they appear.  A thread without an installed report drops the
 * line.  Thread-local storage lets layers run concurrently.
 */
#ifndef PDL_REPORT_H
#define PDL_REPORT_H

#include <stdio.h>

#define PDL_REPORT_VALUES 32

typedef struct {
    double values[PDL_REPORT_VALUES];
    int n_values;
    int n_lines;
} pdl_report;

void pdl_capture(pdl_report *report);
int pdl_printf(const char *format, ...);
int pdl_fprintf(FILE *stream, const char *format, ...);
void pdl_srand(unsigned int seed);

#endif

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
    const char *format;     /* format of the last line that had values */
    int first_value;        /* index in values of that line's first value */
} pdl_report;

void pdl_capture(pdl_report *report);
int pdl_printf(const char *format, ...);
int pdl_fprintf(FILE *stream, const char *format, ...);

/*
 * Like pdl_printf for lines written to stdout or stderr (AlexeyAB's
 * layer writes its statistics line to stderr); other streams are dropped.
 */
int pdl_fork_fprintf(FILE *stream, const char *format, ...);

/*
 * Store in *value the number of the last line with values whose format
 * text just before the conversion ends with label, as a whole word
 * ("IOU: " matches "(IOU: %f" but not "GIOU: %f").  The first such
 * conversion wins.  Return 1 when found, 0 otherwise.
 */
int pdl_report_find(const pdl_report *report, const char *label, double *value);
void pdl_srand(unsigned int seed);

#endif

#include <ctype.h>
#include <stdarg.h>
#include <string.h>

#include "pdl_report.h"

static _Thread_local pdl_report *current;

void pdl_capture(pdl_report *report)
{
    current = report;
}

static void store(double value)
{
    if (current && current->n_values < PDL_REPORT_VALUES) {
        current->values[current->n_values] = value;
    }
    if (current) current->n_values += 1;
}

/*
 * Walk the format the way printf would and keep the numeric arguments.
 * Only the conversions that upstream's report lines use are read: d, i,
 * u, f, e, g and their long forms.  A string or pointer argument is
 * consumed and dropped, so that later numbers stay aligned.
 */
static void capture(const char *format, va_list args)
{
    const char *p;
    for (p = format; *p; ++p) {
        int is_long = 0;
        if (*p != '%') continue;
        ++p;
        if (*p == '%') continue;
        while (*p && strchr("-+ #0123456789.*", *p)) {
            if (*p == '*') (void)va_arg(args, int);
            ++p;
        }
        while (*p == 'l' || *p == 'h' || *p == 'z') {
            if (*p == 'l' || *p == 'z') is_long = 1;
            ++p;
        }
        switch (*p) {
        case 'd': case 'i':
            store(is_long ? (double)va_arg(args, long) : va_arg(args, int));
            break;
        case 'u': case 'x':
            store(is_long ? (double)va_arg(args, unsigned long)
                          : va_arg(args, unsigned int));
            break;
        case 'f': case 'e': case 'g':
            store(va_arg(args, double));
            break;
        case 's': case 'p':
            (void)va_arg(args, void *);
            break;
        case 'c':
            (void)va_arg(args, int);
            break;
        default:
            return;
        }
    }
}

static void record(const char *format, va_list args)
{
    int first = current ? current->n_values : 0;

    capture(format, args);
    if (!current) return;
    current->n_lines += 1;
    if (current->n_values > first) {
        current->format = format;
        current->first_value = first;
    }
}

int pdl_printf(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    record(format, args);
    va_end(args);
    return 0;
}

int pdl_fork_fprintf(FILE *stream, const char *format, ...)
{
    va_list args;
    if (stream != stdout && stream != stderr) return 0;
    va_start(args, format);
    record(format, args);
    va_end(args);
    return 0;
}

/*
 * Walk report->format like capture does, counting the conversions that
 * store a value, and compare the literal text before each with label.
 */
int pdl_report_find(const pdl_report *report, const char *label, double *value)
{
    size_t label_length = strlen(label);
    const char *text = report->format;
    const char *start;
    const char *p;
    size_t before;
    int k = report->first_value;

    if (!text) return 0;
    for (p = text; *p; ++p) {
        const char *conversion = p;
        if (*p != '%') continue;
        ++p;
        if (*p == '%') continue;
        while (*p && strchr("-+ #0123456789.*lhz", *p)) ++p;
        if (!*p || !strchr("diuxfegscp", *p)) return 0;
        if (*p == 's' || *p == 'p' || *p == 'c') continue;

        before = (size_t)(conversion - text);
        start = conversion - label_length;
        if (before >= label_length && strncmp(start, label, label_length) == 0
            && (before == label_length || !isalpha((unsigned char)start[-1]))) {
            if (k >= report->n_values || k >= PDL_REPORT_VALUES) return 0;
            *value = report->values[k];
            return 1;
        }
        ++k;
    }
    return 0;
}

int pdl_fprintf(FILE *stream, const char *format, ...)
{
    (void)stream;
    (void)format;
    return 0;
}

void pdl_srand(unsigned int seed)
{
    (void)seed;
}

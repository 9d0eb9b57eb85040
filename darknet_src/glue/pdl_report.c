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
 * Only the conversions that upstream's report lines use are read
 * (d, i, u, f, e, g and their long forms); a string or pointer argument
 * is consumed and dropped so that later numbers stay aligned.
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

int pdl_printf(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    capture(format, args);
    va_end(args);
    if (current) current->n_lines += 1;
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

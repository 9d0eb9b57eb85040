/*
 * Forced include for a fork's yolo_layer unit (gcc -include).
 *
 * On top of pdl_shim.h it routes system() to the glue, because
 * AlexeyAB's layer runs a shell command that appends to bad_label.list
 * when a truth coordinate is outside [0, 1].  The Python side rejects
 * such truth before the call, so the stand-in only keeps a library from
 * running commands if a check is ever missed.
 */
#ifndef PDL_FORK_SHIM_H
#define PDL_FORK_SHIM_H

#include "pdl_shim.h"

int pdl_system(const char *command);

#define system(command) pdl_system(command)

/*
 * AlexeyAB's layer writes its statistics line to stderr, so a fork's
 * stdout and stderr lines are captured like printf's.
 */
#undef fprintf
#define fprintf(stream, ...) pdl_fork_fprintf(stream, __VA_ARGS__)

#endif

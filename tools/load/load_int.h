/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-load internals shared between the live mode (load.c) and the synthetic mode. */
#ifndef FAULTLINE_LOAD_INT_H
#define FAULTLINE_LOAD_INT_H

#include <stdio.h>

/** Run the synthetic mode with the arguments after "synthetic"; returns the exit status. */
int fl__load_synthetic_main(int argc, char **argv);
/** Print the synthetic mode's options. */
void fl__load_synthetic_usage(FILE *f);

#endif

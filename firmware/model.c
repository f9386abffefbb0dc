/*
 * model.c - the one translation unit that includes the exported potnn model header.
 *
 * bench/build.py copies the header to <build dir>/potnn_model.h.  Keeping the model in its
 * own translation unit means potnn_predict is an external call from app.c, so the two
 * cycle-counter reads around it stay where they are written.
 */
#include <stdint.h>

#include "potnn_model.h"

/* The application sizes its buffers from -D values that bench/build.py read from this header;
 * a mismatch would be a build-system bug, so stop the build rather than corrupt memory. */
typedef char bench_input_size_matches[(POTNN_INPUT_SIZE == BENCH_INPUT_SIZE) ? 1 : -1];
typedef char bench_num_classes_matches[(POTNN_NUM_CLASSES == BENCH_NUM_CLASSES) ? 1 : -1];

/* The backend interface, as the core and built-in backends include it (the public, installed
 * copy is vnrt/backend.h, which plugins include). */
#ifndef VNRT_BACKENDS_BACKEND_H_
#define VNRT_BACKENDS_BACKEND_H_
#include "vnrt/backend.h"
#endif

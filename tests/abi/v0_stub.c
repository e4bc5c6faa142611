/* A link-time stand-in for vnrt 0.1.0's libvnrt.so.0: it defines, unversioned, the functions
 * v0_consumer.c calls, as 0.1.0's library did. Linking the consumer against it gives the
 * consumer the unversioned references a program built against 0.1.0 has; at run time the real
 * library (same SONAME) is found first on LD_LIBRARY_PATH, and these bodies never run. */
#include <stdlib.h>

#define STUB(name)                                        \
  __attribute__((visibility("default"))) void name(void); \
  void name(void) { abort(); }

STUB(vnrt_version)
STUB(vnrt_status_string)
STUB(vnrt_context_create)
STUB(vnrt_context_destroy)
STUB(vnrt_context_last_error)
STUB(vnrt_device_select)
STUB(vnrt_device_get_info)
STUB(vnrt_graph_create)
STUB(vnrt_graph_destroy)
STUB(vnrt_graph_add_input)
STUB(vnrt_graph_add_node)
STUB(vnrt_graph_add_output)
STUB(vnrt_plan_create)
STUB(vnrt_plan_create_shared)
STUB(vnrt_plan_destroy)
STUB(vnrt_plan_set_input)
STUB(vnrt_plan_run)
STUB(vnrt_plan_read_output)
STUB(vnrt_plan_get_info)
STUB(vnrt_plan_get_run_stats)
STUB(vnrt_engram_store_create)
STUB(vnrt_engram_store_destroy)
STUB(vnrt_engram_store_lookup)
STUB(vnrt_engram_store_stats)

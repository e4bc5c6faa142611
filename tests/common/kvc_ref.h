/* kv_compress's states across runs, the check test_state runs on every device and test_vulkan
 * under synchronization validation: docs/ops.md's kv_compress over KVC_L positions in plain C
 * against the device fed the same positions in runs of 1, 3 and 5. */
#ifndef VNRT_TESTS_KVC_REF_H_
#define VNRT_TESTS_KVC_REF_H_

#include "test_util.h"

/* ratio 4, width 8 (with overlap 16 channels: OpenCL's 16-wide state kernel), 15 positions:
 * three windows close, and the open one holds 3 positions. */
enum { KVC_M = 4, KVC_D = 8, KVC_L = 15, KVC_W = KVC_L / KVC_M };

/* For overlap 0 and 1 and runs of 1 (a decode step), 3 and 5 positions (runs across one window
 * and two), on dev: the plan updates both states in place exactly when the device's caps have
 * VNRT_CAP_STATE_INPLACE (no node on the CPU fallback), the entries of the closed windows are
 * the reference's (relative 1e-5) and the state rows that hold a seen position equal the
 * reference's exactly; then a run at pos0 = -2 fails and leaves both states as they were.
 * Aborts the test with the device, overlap and run size otherwise. */
void kvc_check_runs(vnrt_context *ctx, vnrt_device *dev);

#endif /* VNRT_TESTS_KVC_REF_H_ */

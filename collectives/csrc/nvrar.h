// NVRAR: hierarchical all-reduce over NVSHMEM point-to-point operations.
//
// C interface of libnvrar.so, called from Python through ctypes (collectives/nvrar.py) with raw device
// pointers and a CUDA stream. One NVSHMEM instance per process; every call is collective over all PEs
// and must be issued in the same order on every PE, each PE's calls ordered on one stream.
#pragma once

#include <stddef.h>
#include <stdint.h>

#define NVRAR_API extern "C" __attribute__((visibility("default")))

enum nvrar_dtype { NVRAR_FLOAT32 = 0, NVRAR_FLOAT16 = 1, NVRAR_BFLOAT16 = 2 };
enum nvrar_protocol { NVRAR_LL = 0, NVRAR_SIMPLE = 1 };

// Phases named in the error word, so a timeout says where it waited.
enum nvrar_phase {
  NVRAR_PHASE_REDUCE_SCATTER = 1,
  NVRAR_PHASE_FOLD_IN = 2,
  NVRAR_PHASE_EXCHANGE = 3,
  NVRAR_PHASE_FOLD_OUT = 4,
  NVRAR_PHASE_ALL_GATHER = 5,
};

// Error word written by a kernel whose wait timed out: bit 31 set, phase in bits 24-27, exchange step in
// bits 28-30 (exchange phase only), the PE it waited for in bits 0-23. Zero means no error.
#define NVRAR_ERROR_FLAG 0x80000000u

// Size in bytes of the NVSHMEM unique id that rank 0 creates and every rank passes to nvrar_init.
NVRAR_API int nvrar_uniqueid_size(void);
// Write a fresh NVSHMEM unique id into `out` (nvrar_uniqueid_size() bytes). Returns 0 or an error code.
NVRAR_API int nvrar_get_uniqueid(char *out);
// Start NVSHMEM on `device` as PE `rank` of `nranks` with the id from rank 0, and allocate the symmetric
// buffers for messages up to `max_bytes`. `gpus_per_node` PEs with consecutive ranks form one node.
// Collective. Returns 0, or nonzero with the reason in nvrar_last_error().
NVRAR_API int nvrar_init(int rank, int nranks, const char *uniqueid, int gpus_per_node, int device,
                         size_t max_bytes, double timeout_s);
// Sum `count` elements of `in` over all PEs into `out` (may equal `in`), on `stream`. Enqueues one kernel;
// capturable in a CUDA graph. 0 on a successful launch, nonzero with the reason in nvrar_last_error().
NVRAR_API int nvrar_allreduce(const void *in, void *out, size_t count, int dtype, int protocol, int blocks,
                              int threads, int chunk_bytes, void *stream);
// The error word (see NVRAR_ERROR_FLAG) as last written by any kernel; readable without synchronising.
NVRAR_API uint32_t nvrar_error_word(void);
NVRAR_API const char *nvrar_last_error(void);
NVRAR_API int nvrar_finalize(void);

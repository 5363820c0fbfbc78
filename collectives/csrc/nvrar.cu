// NVRAR: hierarchical all-reduce built from NVSHMEM point-to-point operations only.
//
// G PEs with consecutive ranks form a node; N = nranks / G nodes. One call, one kernel:
//   1. intra-node reduce-scatter: every PE stores slice j of its input straight into local peer j's
//      receive region through NVSHMEM peer pointers; PE j sums the G contributions of slice j;
//   2. inter-node recursive doubling on that slice with the PEs of the same local rank: nodes beyond
//      the largest power of two P fold in first (send their slice to node - P) and out last, so any N
//      works; at step s a node exchanges with node ^ (1 << s) through nvshmemx_putmem(_signal)_nbi_block;
//   3. intra-node all-gather of the reduced slices through peer pointers.
// No NVSHMEM team collective is used, so this runs where several PEs share one GPU (NVSHMEM refuses team
// collectives there), and a whole multi-node topology can be checked on one GPU with "virtual nodes".
//
// Protocols. LL: every 4-byte data word travels with a 4-byte flag (the call's sequence number) in one
// 8-byte store; receivers poll the flags, so no fence or signal is needed. SIMPLE: raw data, then one
// flag per (block, chunk) with release semantics (intra-node stores) or nvshmemx_putmem_signal_nbi_block
// (inter-node); receivers wait on the flag. LL halves bandwidth and saves a round of latency: small messages.
//
// Flow control without barriers. Every receive region exists twice, selected by the call's parity. A PE
// writes call k's data into a partner's region of parity k & 1 only after it has received that partner's
// data of call k-1 (recursive doubling: same partner, previous call; reduce-scatter and all-gather: the
// partner's all-gather of call k-1 completed this PE's call k-1), and a PE starts call k only after its
// whole kernel of call k-1 finished (stream order). So the partner has finished call k-2, the last reader
// of that region: receiving a partner's data is its "consumed" signal, and consecutive calls need no
// barrier. Flags carry the sequence number, so stale data of call k-2 is never mistaken for call k.
//
// Sequence numbers live in device memory and are advanced by the kernel itself, so a call is CUDA-graph
// capturable and each graph replay is a new call. Every wait is bounded (clock64): on timeout the kernel
// writes an error word naming the phase and the PE it waited for into host-mapped memory and returns;
// the host raises instead of hanging.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <nvshmem.h>
#include <nvshmemx.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "nvrar.h"

namespace {

constexpr int kMaxBlocks = 32;
constexpr int kMaxChunks = 64;
constexpr int kMaxSteps = 16;

struct Layout {
  char *base;               // symmetric heap allocation: regions, then signals
  size_t region_bytes;      // one receive or staging region: a slice as LL lines, then as raw words
  size_t simple_off;        // where the raw-word (SIMPLE) area starts in a region
  int regions_per_parity;
  uint64_t *sig;            // symmetric flags [2][kMaxBlocks][nslots][kMaxChunks]
  int nslots;
  unsigned *seq;            // per-block call counters (device memory), all equal between calls
  unsigned *err;            // host-mapped error word (device address)
  int G, nodes, pow2, steps;
  int node, local;
  long long timeout_cycles;
};

// Region indices within one parity. Receive regions double as flag slots for the SIMPLE protocol.
__host__ __device__ inline int rg_rs(int j) { return j; }
__host__ __device__ inline int rg_ag(const Layout &L, int j) { return L.G + j; }
__host__ __device__ inline int rg_fold_in(const Layout &L) { return 2 * L.G; }
__host__ __device__ inline int rg_fold_out(const Layout &L) { return 2 * L.G + 1; }
__host__ __device__ inline int rg_rd(const Layout &L, int s) { return 2 * L.G + 2 + s; }
// Staging regions (the source of inter-node puts) follow the receive regions.
__host__ __device__ inline int stage_of(const Layout &L, int recv_region) {
  return 2 * L.G + 2 + L.steps + (recv_region - 2 * L.G);
}

__device__ inline char *region(const Layout &L, int parity, int idx) {
  return L.base + ((size_t)parity * L.regions_per_parity + idx) * L.region_bytes;
}
// LL lines and SIMPLE raw words live in separate parts of a region: a raw word left by a SIMPLE call
// must never read as a valid LL flag in a later call.
template <int PROTO> __device__ inline char *area(const Layout &L, char *r) {
  return PROTO == NVRAR_SIMPLE ? r + L.simple_off : r;
}
__device__ inline uint64_t *flag(const Layout &L, int parity, int block, int slot, int chunk) {
  return L.sig + (((size_t)parity * kMaxBlocks + block) * L.nslots + slot) * kMaxChunks + chunk;
}

// Two floats are enough for every supported type: a 4-byte word holds one fp32 or two 16-bit values.
template <typename T> struct Word;
template <> struct Word<float> {
  static __device__ float2 load(uint32_t w) { return make_float2(__uint_as_float(w), 0.f); }
  static __device__ uint32_t store(float2 v) { return __float_as_uint(v.x); }
};
template <> struct Word<__half> {
  static __device__ float2 load(uint32_t w) {
    __half2 h;
    memcpy(&h, &w, 4);
    return __half22float2(h);
  }
  static __device__ uint32_t store(float2 v) {
    __half2 h = __floats2half2_rn(v.x, v.y);
    uint32_t w;
    memcpy(&w, &h, 4);
    return w;
  }
};
template <> struct Word<__nv_bfloat16> {
  static __device__ float2 load(uint32_t w) {
    __nv_bfloat162 h;
    memcpy(&h, &w, 4);
    return __bfloat1622float2(h);
  }
  static __device__ uint32_t store(float2 v) {
    __nv_bfloat162 h = __floats2bfloat162_rn(v.x, v.y);
    uint32_t w;
    memcpy(&w, &h, 4);
    return w;
  }
};

// User buffers are read and written by whole words except a trailing 16-bit element.
__device__ inline uint32_t load_word(const char *p, size_t w, size_t nbytes) {
  size_t off = w * 4;
  if (off + 4 <= nbytes) return *reinterpret_cast<const uint32_t *>(p + off);
  return *reinterpret_cast<const uint16_t *>(p + off);
}
__device__ inline void store_word(char *p, size_t w, uint32_t v, size_t nbytes) {
  size_t off = w * 4;
  if (off + 4 <= nbytes)
    *reinterpret_cast<uint32_t *>(p + off) = v;
  else
    *reinterpret_cast<uint16_t *>(p + off) = (uint16_t)v;
}

__device__ inline void st_volatile_u64(uint64_t *p, uint64_t v) {
  asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ inline void st_volatile_u32(uint32_t *p, uint32_t v) {
  asm volatile("st.volatile.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ inline uint64_t ld_volatile_u64(const uint64_t *p) {
  uint64_t v;
  asm volatile("ld.volatile.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ inline uint32_t ld_volatile_u32(const uint32_t *p) {
  uint32_t v;
  asm volatile("ld.volatile.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ inline void st_release_u64(uint64_t *p, uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ inline uint64_t ld_acquire_u64(const uint64_t *p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ inline uint64_t ll_line(uint32_t data, unsigned seq) { return ((uint64_t)seq << 32) | data; }

__device__ inline unsigned error_code(int phase, int step, int pe) {
  return NVRAR_ERROR_FLAG | ((unsigned)phase << 24) | ((unsigned)(step & 7) << 28) | ((unsigned)pe & 0xFFFFFFu);
}

struct Ctx {
  const Layout &L;
  unsigned seq;
  int parity;
  int chunk;
  volatile int *abort;
};

__device__ inline bool timed_out(const Ctx &c, long long t0, int phase, int step, int pe) {
  if (*c.abort) return true;
  if (clock64() - t0 > c.L.timeout_cycles) {
    atomicCAS_system(c.L.err, 0u, error_code(phase, step, pe));
    *c.abort = 1;
    return true;
  }
  return false;
}

// Wait for one LL line of this call; false when the call is being abandoned.
__device__ inline bool wait_line(const Ctx &c, const uint64_t *p, uint32_t *data, int phase, int step, int pe) {
  long long t0 = clock64();
  for (unsigned spins = 1;; ++spins) {
    uint64_t v = ld_volatile_u64(p);
    if ((unsigned)(v >> 32) == c.seq) {
      *data = (uint32_t)v;
      return true;
    }
    if ((spins & 255u) == 0 && timed_out(c, t0, phase, step, pe)) return false;
  }
}

// Wait for a SIMPLE-protocol flag (one thread); false when the call is being abandoned.
__device__ inline bool wait_flag(const Ctx &c, const uint64_t *p, int phase, int step, int pe) {
  long long t0 = clock64();
  for (unsigned spins = 1;; ++spins) {
    if (ld_acquire_u64(p) == (uint64_t)c.seq) return true;
    if ((spins & 255u) == 0 && timed_out(c, t0, phase, step, pe)) return false;
  }
}

// Raise a SIMPLE-protocol flag in a local peer's memory after this block's stores to it.
__device__ inline void raise_peer_flag(const Ctx &c, int slot, int pe) {
  uint64_t *f = static_cast<uint64_t *>(nvshmem_ptr(flag(c.L, c.parity, blockIdx.x, slot, c.chunk), pe));
  st_release_u64(f, c.seq);
}

template <typename T, int PROTO>
__device__ void reduce_scatter(const Ctx &c, const char *in, char *out, size_t nbytes, size_t SW, size_t W,
                               size_t c0, size_t c1) {
  const Layout &L = c.L;
  const int tid = threadIdx.x, T_ = blockDim.x;
  for (int jj = 1; jj < L.G; ++jj) {
    const int j = (L.local + jj) % L.G, pe = L.node * L.G + j;
    const size_t start = (size_t)j * SW;
    const size_t end = start >= W ? c0 : min(c1, min(SW, W - start));
    char *dst = area<PROTO>(L, static_cast<char *>(nvshmem_ptr(region(L, c.parity, rg_rs(L.local)), pe)));
    for (size_t w = c0 + tid; w < end; w += T_) {
      uint32_t v = load_word(in, start + w, nbytes);
      if (PROTO == NVRAR_LL)
        st_volatile_u64(reinterpret_cast<uint64_t *>(dst) + w, ll_line(v, c.seq));
      else
        st_volatile_u32(reinterpret_cast<uint32_t *>(dst) + w, v);
    }
  }
  if (PROTO == NVRAR_SIMPLE) {
    __threadfence_system();
    __syncthreads();
    if (tid == 0) {
      for (int jj = 1; jj < L.G; ++jj) raise_peer_flag(c, rg_rs(L.local), L.node * L.G + (L.local + jj) % L.G);
      for (int jj = 1; jj < L.G && !*c.abort; ++jj) {
        const int j = (L.local + jj) % L.G;
        wait_flag(c, flag(L, c.parity, blockIdx.x, rg_rs(j), c.chunk), NVRAR_PHASE_REDUCE_SCATTER, 0,
                  L.node * L.G + j);
      }
    }
    __syncthreads();
    if (*c.abort) return;
  }
  const size_t mine = (size_t)L.local * SW;
  const size_t end = mine >= W ? c0 : min(c1, min(SW, W - mine));
  for (size_t w = c0 + tid; w < end; w += T_) {
    float2 acc = make_float2(0.f, 0.f);
    for (int j = 0; j < L.G; ++j) {
      uint32_t v;
      if (j == L.local) {
        v = load_word(in, mine + w, nbytes);
      } else if (PROTO == NVRAR_LL) {
        const uint64_t *src = reinterpret_cast<const uint64_t *>(region(L, c.parity, rg_rs(j))) + w;
        if (!wait_line(c, src, &v, NVRAR_PHASE_REDUCE_SCATTER, 0, L.node * L.G + j)) return;
      } else {
        v = ld_volatile_u32(reinterpret_cast<const uint32_t *>(area<PROTO>(L, region(L, c.parity, rg_rs(j)))) + w);
      }
      float2 x = Word<T>::load(v);
      acc.x += x.x;
      acc.y += x.y;
    }
    store_word(out, mine + w, Word<T>::store(acc), nbytes);
  }
}

// Send this PE's slice words [c0, c1) to `pe`'s receive region `dst` by an NVSHMEM put from staging.
template <int PROTO>
__device__ void put_slice(const Ctx &c, const char *out, size_t nbytes, size_t mine, size_t c0, size_t c1,
                          int dst, int pe) {
  const Layout &L = c.L;
  char *stage = area<PROTO>(L, region(L, c.parity, stage_of(L, dst)));
  for (size_t w = c0 + threadIdx.x; w < c1; w += blockDim.x) {
    uint32_t v = load_word(out, mine + w, nbytes);
    if (PROTO == NVRAR_LL)
      reinterpret_cast<uint64_t *>(stage)[w] = ll_line(v, c.seq);
    else
      reinterpret_cast<uint32_t *>(stage)[w] = v;
  }
  __syncthreads();
  if (PROTO == NVRAR_LL) {
    nvshmemx_putmem_nbi_block(region(L, c.parity, dst) + c0 * 8, stage + c0 * 8, (c1 - c0) * 8, pe);
  } else {
    nvshmemx_putmem_signal_nbi_block(area<PROTO>(L, region(L, c.parity, dst)) + c0 * 4, stage + c0 * 4, (c1 - c0) * 4,
                                     flag(L, c.parity, blockIdx.x, dst, c.chunk), c.seq, NVSHMEM_SIGNAL_SET,
                                     pe);
  }
}

// Receive `pe`'s words [c0, c1) in region `src` and add them to (or, with add=false, copy them over) the slice.
template <typename T, int PROTO>
__device__ void take_slice(const Ctx &c, char *out, size_t nbytes, size_t mine, size_t c0, size_t c1, int src,
                           int pe, bool add, int phase, int step) {
  const Layout &L = c.L;
  const char *buf = area<PROTO>(L, region(L, c.parity, src));
  if (PROTO == NVRAR_SIMPLE) {
    if (threadIdx.x == 0) wait_flag(c, flag(L, c.parity, blockIdx.x, src, c.chunk), phase, step, pe);
    __syncthreads();
    if (*c.abort) return;
  }
  for (size_t w = c0 + threadIdx.x; w < c1; w += blockDim.x) {
    uint32_t v;
    if (PROTO == NVRAR_LL) {
      if (!wait_line(c, reinterpret_cast<const uint64_t *>(buf) + w, &v, phase, step, pe)) return;
    } else {
      v = ld_volatile_u32(reinterpret_cast<const uint32_t *>(buf) + w);
    }
    if (add) {
      float2 a = Word<T>::load(load_word(out, mine + w, nbytes)), b = Word<T>::load(v);
      v = Word<T>::store(make_float2(a.x + b.x, a.y + b.y));
    }
    store_word(out, mine + w, v, nbytes);
  }
}

template <typename T, int PROTO>
__device__ void inter_node(const Ctx &c, char *out, size_t nbytes, size_t mine, size_t c0, size_t c1) {
  const Layout &L = c.L;
  const int extra = L.nodes - L.pow2;
  if (L.node >= L.pow2) {
    const int pe = (L.node - L.pow2) * L.G + L.local;
    put_slice<PROTO>(c, out, nbytes, mine, c0, c1, rg_fold_in(L), pe);
    take_slice<T, PROTO>(c, out, nbytes, mine, c0, c1, rg_fold_out(L), pe, false, NVRAR_PHASE_FOLD_OUT, 0);
    return;
  }
  if (L.node < extra) {
    const int pe = (L.node + L.pow2) * L.G + L.local;
    take_slice<T, PROTO>(c, out, nbytes, mine, c0, c1, rg_fold_in(L), pe, true, NVRAR_PHASE_FOLD_IN, 0);
    __syncthreads();
    if (*c.abort) return;
  }
  for (int s = 0; s < L.steps; ++s) {
    const int pe = (L.node ^ (1 << s)) * L.G + L.local;
    put_slice<PROTO>(c, out, nbytes, mine, c0, c1, rg_rd(L, s), pe);
    take_slice<T, PROTO>(c, out, nbytes, mine, c0, c1, rg_rd(L, s), pe, true, NVRAR_PHASE_EXCHANGE, s);
    __syncthreads();
    if (*c.abort) return;
  }
  if (L.node < extra) put_slice<PROTO>(c, out, nbytes, mine, c0, c1, rg_fold_out(L), (L.node + L.pow2) * L.G + L.local);
}

template <typename T, int PROTO>
__device__ void all_gather(const Ctx &c, char *out, size_t nbytes, size_t SW, size_t W, size_t c0, size_t c1) {
  const Layout &L = c.L;
  const int tid = threadIdx.x, T_ = blockDim.x;
  const size_t mine = (size_t)L.local * SW;
  const size_t my_end = mine >= W ? c0 : min(c1, min(SW, W - mine));
  for (int jj = 1; jj < L.G; ++jj) {
    const int pe = L.node * L.G + (L.local + jj) % L.G;
    char *dst = area<PROTO>(L, static_cast<char *>(nvshmem_ptr(region(L, c.parity, rg_ag(L, L.local)), pe)));
    for (size_t w = c0 + tid; w < my_end; w += T_) {
      uint32_t v = load_word(out, mine + w, nbytes);
      if (PROTO == NVRAR_LL)
        st_volatile_u64(reinterpret_cast<uint64_t *>(dst) + w, ll_line(v, c.seq));
      else
        st_volatile_u32(reinterpret_cast<uint32_t *>(dst) + w, v);
    }
  }
  if (PROTO == NVRAR_SIMPLE) {
    __threadfence_system();
    __syncthreads();
    if (tid == 0) {
      for (int jj = 1; jj < L.G; ++jj) raise_peer_flag(c, rg_ag(L, L.local), L.node * L.G + (L.local + jj) % L.G);
      for (int jj = 1; jj < L.G && !*c.abort; ++jj) {
        const int j = (L.local + jj) % L.G;
        wait_flag(c, flag(L, c.parity, blockIdx.x, rg_ag(L, j), c.chunk), NVRAR_PHASE_ALL_GATHER, 0,
                  L.node * L.G + j);
      }
    }
    __syncthreads();
    if (*c.abort) return;
  }
  for (int jj = 1; jj < L.G; ++jj) {
    const int j = (L.local + jj) % L.G;
    const size_t start = (size_t)j * SW;
    const size_t end = start >= W ? c0 : min(c1, min(SW, W - start));
    const char *buf = area<PROTO>(L, region(L, c.parity, rg_ag(L, j)));
    for (size_t w = c0 + tid; w < end; w += T_) {
      uint32_t v;
      if (PROTO == NVRAR_LL) {
        if (!wait_line(c, reinterpret_cast<const uint64_t *>(buf) + w, &v, NVRAR_PHASE_ALL_GATHER, 0,
                       L.node * L.G + j))
          return;
      } else {
        v = ld_volatile_u32(reinterpret_cast<const uint32_t *>(buf) + w);
      }
      store_word(out, start + w, v, nbytes);
    }
  }
}

template <typename T, int PROTO>
__global__ void __launch_bounds__(1024) nvrar_kernel(const char *in, char *out, size_t nbytes, Layout L,
                                                     int chunk_words) {
  __shared__ unsigned s_seq;
  __shared__ int s_abort;
  const int b = blockIdx.x, B = gridDim.x;
  if (threadIdx.x == 0) {
    // Every counter advances once per call whatever the grid size, so all blocks agree on the number.
    const unsigned s = L.seq[b] + 1;
    for (int i = b; i < kMaxBlocks; i += B) L.seq[i] = s;
    s_seq = s;
    s_abort = 0;
  }
  __syncthreads();
  const Ctx base{L, s_seq, (int)(s_seq & 1u), 0, &s_abort};
  const size_t W = (nbytes + 3) / 4;
  const size_t SW = (W + L.G - 1) / L.G;
  const size_t CW = (SW + B - 1) / B;
  const size_t lo = min(SW, (size_t)b * CW), hi = min(SW, lo + CW);
  const size_t mine = (size_t)L.local * SW;
  const size_t my_len = mine >= W ? 0 : min(SW, W - mine);
  int chunk = 0;
  for (size_t c0 = lo; c0 < hi; c0 += chunk_words, ++chunk) {
    const size_t c1 = min(hi, c0 + (size_t)chunk_words);
    const Ctx c{L, base.seq, base.parity, chunk, &s_abort};
    if (L.G > 1) reduce_scatter<T, PROTO>(c, in, out, nbytes, SW, W, c0, c1);
    else if (in != out)
      for (size_t w = c0 + threadIdx.x; w < min(c1, my_len); w += blockDim.x)
        store_word(out, w, load_word(in, w, nbytes), nbytes);
    __syncthreads();
    if (s_abort) return;
    if (L.nodes > 1 && c0 < my_len) {
      inter_node<T, PROTO>(c, out, nbytes, mine, c0, min(c1, my_len));
      __syncthreads();
      if (s_abort) return;
    }
    if (L.G > 1) all_gather<T, PROTO>(c, out, nbytes, SW, W, c0, c1);
    __syncthreads();
    if (s_abort) return;
  }
}

struct State {
  bool ready = false;
  Layout L{};
  size_t max_bytes = 0;
  size_t heap_bytes = 0;
  unsigned *err_host = nullptr;
};
State g;
std::string g_error;

int fail(const std::string &msg) {
  g_error = msg;
  return 1;
}

#define CUDA_OR_FAIL(call)                                                                          \
  do {                                                                                              \
    cudaError_t e_ = (call);                                                                        \
    if (e_ != cudaSuccess) return fail(std::string(#call) + ": " + cudaGetErrorString(e_));         \
  } while (0)

template <typename T>
int launch(const void *in, void *out, size_t nbytes, int protocol, int blocks, int threads, int chunk_words,
           cudaStream_t stream) {
  const char *i = static_cast<const char *>(in);
  char *o = static_cast<char *>(out);
  if (protocol == NVRAR_LL)
    nvrar_kernel<T, NVRAR_LL><<<blocks, threads, 0, stream>>>(i, o, nbytes, g.L, chunk_words);
  else
    nvrar_kernel<T, NVRAR_SIMPLE><<<blocks, threads, 0, stream>>>(i, o, nbytes, g.L, chunk_words);
  CUDA_OR_FAIL(cudaGetLastError());
  return 0;
}

}  // namespace

NVRAR_API int nvrar_uniqueid_size(void) { return (int)sizeof(nvshmemx_uniqueid_t); }

NVRAR_API int nvrar_get_uniqueid(char *out) {
  nvshmemx_uniqueid_t id = NVSHMEMX_UNIQUEID_INITIALIZER;
  if (nvshmemx_get_uniqueid(&id) != 0) return fail("nvshmemx_get_uniqueid failed");
  memcpy(out, &id, sizeof id);
  return 0;
}

NVRAR_API int nvrar_init(int rank, int nranks, const char *uniqueid, int gpus_per_node, int device,
                         size_t max_bytes, double timeout_s) {
  if (g.ready) return fail("nvrar_init: already initialised in this process");
  if (gpus_per_node < 1 || nranks % gpus_per_node != 0)
    return fail("gpus_per_node=" + std::to_string(gpus_per_node) + " does not divide " + std::to_string(nranks));
  const int nodes = nranks / gpus_per_node;
  int pow2 = 1, steps = 0;
  while (pow2 * 2 <= nodes) pow2 *= 2, ++steps;
  if (steps > kMaxSteps) return fail("too many nodes");
  CUDA_OR_FAIL(cudaSetDevice(device));

  nvshmemx_uniqueid_t id;
  memcpy(&id, uniqueid, sizeof id);
  nvshmemx_init_attr_t attr = NVSHMEMX_INIT_ATTR_INITIALIZER;
  if (nvshmemx_set_attr_uniqueid_args(rank, nranks, &id, &attr) != 0)
    return fail("nvshmemx_set_attr_uniqueid_args failed");
  if (nvshmemx_init_attr(NVSHMEMX_INIT_WITH_UNIQUEID, &attr) != 0) return fail("nvshmemx_init_attr failed");
  if (nvshmem_my_pe() != rank || nvshmem_n_pes() != nranks)
    return fail("NVSHMEM PE " + std::to_string(nvshmem_my_pe()) + "/" + std::to_string(nvshmem_n_pes()) +
                " does not match rank " + std::to_string(rank) + "/" + std::to_string(nranks));

  Layout L{};
  L.G = gpus_per_node;
  L.nodes = nodes;
  L.pow2 = pow2;
  L.steps = steps;
  L.node = rank / gpus_per_node;
  L.local = rank % gpus_per_node;
  const size_t words = (max_bytes + 3) / 4;
  const size_t slice_words = (words + L.G - 1) / L.G;
  L.simple_off = (slice_words * 8 + 255) / 256 * 256;
  L.region_bytes = L.simple_off + (slice_words * 4 + 255) / 256 * 256;
  L.regions_per_parity = 2 * L.G + 2 + steps + 2 + steps;
  L.nslots = 2 * L.G + 2 + steps;
  const size_t region_total = 2 * (size_t)L.regions_per_parity * L.region_bytes;
  const size_t sig_bytes = 2 * (size_t)kMaxBlocks * L.nslots * kMaxChunks * sizeof(uint64_t);
  g.heap_bytes = region_total + sig_bytes;
  L.base = static_cast<char *>(nvshmem_malloc(g.heap_bytes));
  if (L.base == nullptr)
    return fail("nvshmem_malloc(" + std::to_string(g.heap_bytes) +
                ") failed: raise NVSHMEM_SYMMETRIC_SIZE or lower max_bytes");
  L.sig = reinterpret_cast<uint64_t *>(L.base + region_total);
  CUDA_OR_FAIL(cudaMemset(L.base, 0, g.heap_bytes));
  CUDA_OR_FAIL(cudaMalloc(&L.seq, kMaxBlocks * sizeof(unsigned)));
  CUDA_OR_FAIL(cudaMemset(L.seq, 0, kMaxBlocks * sizeof(unsigned)));
  CUDA_OR_FAIL(cudaHostAlloc(&g.err_host, sizeof(unsigned), cudaHostAllocMapped));
  *g.err_host = 0;
  CUDA_OR_FAIL(cudaHostGetDevicePointer(reinterpret_cast<void **>(&L.err), g.err_host, 0));
  for (int j = 0; j < L.G; ++j) {
    const int pe = L.node * L.G + j;
    if (pe != rank && nvshmem_ptr(L.base, pe) == nullptr)
      return fail("PE " + std::to_string(pe) + " is on this PE's node (gpus_per_node=" +
                  std::to_string(L.G) + ") but its memory cannot be mapped (no peer access)");
  }
  int khz = 0;
  CUDA_OR_FAIL(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device));
  L.timeout_cycles = (long long)(timeout_s * (khz > 0 ? khz : 2000000) * 1000.0);
  CUDA_OR_FAIL(cudaDeviceSynchronize());
  g.L = L;
  g.max_bytes = max_bytes;
  g.ready = true;
  return 0;
}

NVRAR_API int nvrar_allreduce(const void *in, void *out, size_t count, int dtype, int protocol, int blocks,
                              int threads, int chunk_bytes, void *stream) {
  if (!g.ready) return fail("nvrar_allreduce: nvrar_init has not run");
  if (*reinterpret_cast<volatile unsigned *>(g.err_host) != 0)
    return fail("nvrar_allreduce: an earlier call timed out; this communicator is unusable");
  size_t esize = dtype == NVRAR_FLOAT32 ? 4 : (dtype == NVRAR_FLOAT16 || dtype == NVRAR_BFLOAT16) ? 2 : 0;
  if (esize == 0) return fail("nvrar_allreduce: unknown dtype code " + std::to_string(dtype));
  if (protocol != NVRAR_LL && protocol != NVRAR_SIMPLE)
    return fail("nvrar_allreduce: unknown protocol " + std::to_string(protocol));
  const size_t nbytes = count * esize;
  if (nbytes > g.max_bytes)
    return fail("nvrar_allreduce: " + std::to_string(nbytes) + " B exceeds max_bytes " +
                std::to_string(g.max_bytes));
  if ((reinterpret_cast<uintptr_t>(in) | reinterpret_cast<uintptr_t>(out)) % 4 != 0)
    return fail("nvrar_allreduce: buffers must be 4-byte aligned");
  if (blocks < 1 || blocks > kMaxBlocks || threads < 32 || threads > 1024 || threads % 32 != 0 || chunk_bytes < 4)
    return fail("nvrar_allreduce: launch parameters out of range (blocks 1-32, threads 32-1024 step 32, "
                "chunk_bytes >= 4)");
  if (nbytes == 0) return 0;
  const size_t W = (nbytes + 3) / 4;
  const size_t SW = (W + g.L.G - 1) / g.L.G;
  if ((size_t)blocks > SW) blocks = (int)SW;
  const size_t CW = (SW + blocks - 1) / blocks;
  size_t chunk_words = (size_t)chunk_bytes / 4;
  if ((CW + chunk_words - 1) / chunk_words > (size_t)kMaxChunks) chunk_words = (CW + kMaxChunks - 1) / kMaxChunks;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case NVRAR_FLOAT32: return launch<float>(in, out, nbytes, protocol, blocks, threads, (int)chunk_words, s);
    case NVRAR_FLOAT16: return launch<__half>(in, out, nbytes, protocol, blocks, threads, (int)chunk_words, s);
    default: return launch<__nv_bfloat16>(in, out, nbytes, protocol, blocks, threads, (int)chunk_words, s);
  }
}

NVRAR_API uint32_t nvrar_error_word(void) {
  return g.err_host == nullptr ? 0u : *reinterpret_cast<volatile unsigned *>(g.err_host);
}

NVRAR_API const char *nvrar_last_error(void) { return g_error.c_str(); }

NVRAR_API int nvrar_finalize(void) {
  if (!g.ready) return 0;
  CUDA_OR_FAIL(cudaDeviceSynchronize());
  nvshmem_free(g.L.base);
  cudaFree(g.L.seq);
  cudaFreeHost(g.err_host);
  g = State{};
  nvshmem_finalize();
  return 0;
}

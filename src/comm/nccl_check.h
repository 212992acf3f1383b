// PFT_NCCL_CHECK and PFT_CUDA_CHECK: the one checker for NCCL calls and the one for CUDA runtime
// calls. On failure each throws RuntimeFailure naming the call, file:line, the rank and host,
// and the library's own error string (ncclGetErrorString + ncclGetLastError,
// cudaGetErrorString). Only in builds with CUDA (PFT_HAVE_CUDA).
#pragma once

#ifdef PFT_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <nccl.h>

namespace pft {

[[noreturn]] void throw_nccl_error(ncclResult_t rc, const char* call, const char* file, int line);
[[noreturn]] void throw_cuda_error(cudaError_t rc, const char* call, const char* file, int line);

}  // namespace pft

#define PFT_NCCL_CHECK(call)                                            \
  do {                                                                  \
    const ncclResult_t pft_nccl_rc_ = (call);                           \
    if (pft_nccl_rc_ != ncclSuccess)                                    \
      ::pft::throw_nccl_error(pft_nccl_rc_, #call, __FILE__, __LINE__); \
  } while (0)

#define PFT_CUDA_CHECK(call)                                            \
  do {                                                                  \
    const cudaError_t pft_cuda_rc_ = (call);                            \
    if (pft_cuda_rc_ != cudaSuccess)                                    \
      ::pft::throw_cuda_error(pft_cuda_rc_, #call, __FILE__, __LINE__); \
  } while (0)

#endif  // PFT_HAVE_CUDA

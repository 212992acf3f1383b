// PFT_MPI_CHECK: the one checker for MPI calls. On failure it throws RuntimeFailure naming the
// call, file:line, rank, host and MPI's own error string. (Open MPI's default handler aborts;
// core/rank_env.cpp installs MPI_ERRORS_RETURN on the world communicator so this sees errors.)
#pragma once

#include <mpi.h>

#include <string>

namespace pft {

[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line);

}  // namespace pft

#define PFT_MPI_CHECK(call)                                          \
  do {                                                               \
    const int pft_mpi_rc_ = (call);                                  \
    if (pft_mpi_rc_ != MPI_SUCCESS)                                  \
      ::pft::throw_mpi_error(pft_mpi_rc_, #call, __FILE__, __LINE__); \
  } while (0)

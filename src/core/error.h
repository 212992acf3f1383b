// Error types and the exit codes they map to.
//
// Library code throws; only cli/main.cpp turns an exception into an exit code. The codes are a
// contract with launchers and later tooling (see docs/launching.md):
//   0  success
//   2  bad input: config, dataset, checkpoint, command-line flags (fix the input and rerun)
//   3  distributed or runtime failure (a rank died or hung, a library call failed)
//   75 checkpointed after a preemption signal: requeue me (EX_TEMPFAIL)
#pragma once

#include <stdexcept>
#include <string>

namespace pft {

enum class ExitCode : int { kOk = 0, kBadInput = 2, kRuntime = 3, kPreempted = 75 };

// Base of every pft exception. `reported()` is true once one rank has printed the message for
// the whole job (see core/agree.h), so the other ranks exit quietly with the same code.
class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode exit_code() const { return code_; }
  bool reported() const { return reported_; }
  void set_reported(bool r) { reported_ = r; }
  // True when every rank of the job learned of this failure (core/agree.h) and will exit with
  // the same code on its own; otherwise main aborts the job so no peer hangs.
  bool agreed() const { return agreed_; }
  void set_agreed(bool a) { agreed_ = a; }

 private:
  ExitCode code_;
  bool reported_ = false;
  bool agreed_ = false;
};

// Bad input from the user: config, data, checkpoint, flags. Exit 2.
class InputError : public Error {
 public:
  explicit InputError(const std::string& message) : Error(ExitCode::kBadInput, message) {}
};

// A failure of the distributed job or of a library call (MPI, NCCL, CUDA, HDF5). Exit 3.
class RuntimeFailure : public Error {
 public:
  explicit RuntimeFailure(const std::string& message) : Error(ExitCode::kRuntime, message) {}
};

// Thrown after a checkpoint taken because of a preemption signal. Exit 75.
class Preempted : public Error {
 public:
  explicit Preempted(const std::string& message) : Error(ExitCode::kPreempted, message) {}
};

// "file:line: what" helper for internal invariants; throws RuntimeFailure.
[[noreturn]] void throw_internal(const char* file, int line, const std::string& what);

}  // namespace pft

// Internal invariant (a bug in pft if it fires, not bad input).
#define PFT_ASSERT(cond, msg)                                                  \
  do {                                                                         \
    if (!(cond)) ::pft::throw_internal(__FILE__, __LINE__, std::string(msg));  \
  } while (0)

// Preemption signals (contract: core/signals.h).
#include "core/signals.h"

#include <atomic>
#include <csignal>

#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace {

volatile std::sig_atomic_t g_signal = 0;
// The start-up safe points are armed from install_preemption_handlers() until the step loop.
std::atomic<bool> g_startup{false};

void record_signal(int signal) {
  if (g_signal == 0) g_signal = signal;
}

}  // namespace

void install_preemption_handlers() {
  struct sigaction action {};
  action.sa_handler = record_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // system calls in flight (file writes, polls) carry on
  for (const int signal : {SIGTERM, SIGUSR1}) sigaction(signal, &action, nullptr);
  g_startup = true;
}

int preemption_signal() { return g_signal; }

void preemption_check(std::string_view during) {
  const int signal = g_signal;
  if (signal == 0 || !g_startup.load(std::memory_order_relaxed)) return;
  throw Preempted(fmt::format(
      "{} before the first step (noticed at: {}): nothing to checkpoint; exiting {} so the job is "
      "requeued (the rerun starts as this one would have; with train.resume: auto it continues "
      "from the newest checkpoint)",
      signal_name(signal), during, static_cast<int>(ExitCode::kPreempted)));
}

void preemption_at_step_boundaries() { g_startup = false; }

void reset_preemption_signal() { g_signal = 0; }

std::string signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default: return fmt::format("signal {}", signal);
  }
}

}  // namespace pft

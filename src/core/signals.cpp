#include "core/signals.h"

#include <csignal>

#include "core/format.h"

namespace pft {

namespace {

volatile std::sig_atomic_t g_signal = 0;

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
}

int preemption_signal() { return g_signal; }

void reset_preemption_signal() { g_signal = 0; }

std::string signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default: return fmt::format("signal {}", signal);
  }
}

}  // namespace pft

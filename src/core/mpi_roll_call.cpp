// The roll call after a missed deadline (contract and Note [roll call]: core/mpi_roll_call.h).
#include "core/mpi_roll_call.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>

#include "core/format.h"
#include "core/leak_check.h"

namespace pft {
namespace {

constexpr int kRollCallTag = 17;

struct RollCall {
  std::mutex mutex;
  MPI_Comm comm = MPI_COMM_NULL;
  std::vector<std::string> rank_hosts;
  bool taken = false;
  bool reporter = true;  // no lower rank answered
  std::string answer;    // the first roll call's sentence
};

RollCall& state() {
  static RollCall* s = new RollCall;  // never destroyed: used on the way out of a failed job
  return *s;
}

// "ranks 2, 3 on node2" / "rank 2 on node2; ranks 5, 6 on node3", hosts in rank order.
std::string by_host(const std::vector<int>& ranks, const std::vector<std::string>& hosts) {
  std::vector<std::pair<std::string, std::vector<int>>> groups;
  for (int r : ranks) {
    const std::string& h = r < static_cast<int>(hosts.size()) ? hosts[r] : std::string("?");
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == h; });
    if (it == groups.end()) {
      groups.push_back({h, {}});
      it = groups.end() - 1;
    }
    it->second.push_back(r);
  }
  std::string out;
  for (const auto& [host, rs] : groups) {
    if (!out.empty()) out += "; ";
    out += fmt::format("{} {} on {}", rs.size() == 1 ? "rank" : "ranks", fmt::join(rs, ", "), host);
  }
  return out;
}

}  // namespace

double roll_call_grace_s(double timeout_s) { return std::clamp(timeout_s / 4, 1.0, 5.0); }

void register_roll_call(MPI_Comm comm, std::vector<std::string> rank_hosts) {
  RollCall& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.comm = comm;
  s.rank_hosts = std::move(rank_hosts);
}

void unregister_roll_call() {
  RollCall& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.comm = MPI_COMM_NULL;
}

std::string roll_call_after_deadline(double timeout_s) {
  RollCall& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.taken) return s.answer;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (s.comm == MPI_COMM_NULL || finalized) return "";
  int rank = 0, size = 1;
  if (MPI_Comm_rank(s.comm, &rank) != MPI_SUCCESS || MPI_Comm_size(s.comm, &size) != MPI_SUCCESS ||
      size < 2)
    return "";
  s.taken = true;

  // Buffers and requests outlive this call: sends to a lost peer may never complete.
  struct Buffers {
    int token = 1;
    std::vector<int> in;
    std::vector<MPI_Request> sends, recvs;
  };
  auto* b = new Buffers;  // NOLINT: leaked on purpose (Note [roll call])
  leaked_on_purpose(b);
  b->in.assign(static_cast<size_t>(size), 0);
  b->sends.assign(static_cast<size_t>(size), MPI_REQUEST_NULL);
  b->recvs.assign(static_cast<size_t>(size), MPI_REQUEST_NULL);
  for (int p = 0; p < size; ++p) {
    if (p == rank) continue;
    MPI_Irecv(&b->in[p], 1, MPI_INT, p, kRollCallTag, s.comm, &b->recvs[p]);
    MPI_Isend(&b->token, 1, MPI_INT, p, kRollCallTag, s.comm, &b->sends[p]);
  }
  const double grace = roll_call_grace_s(timeout_s);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(grace));
  std::vector<bool> answered(static_cast<size_t>(size), false);
  answered[rank] = true;
  for (int missing = size - 1; missing > 0 && std::chrono::steady_clock::now() < deadline;) {
    for (int p = 0; p < size; ++p) {
      if (answered[p]) continue;
      int flag = 0;
      if (MPI_Test(&b->recvs[p], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) {
        answered[p] = true;
        --missing;
      }
      int sent = 0;  // drive the sends too (a peer may wait for our answer to complete its test)
      MPI_Test(&b->sends[p], &sent, MPI_STATUS_IGNORE);
    }
    if (missing > 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }

  std::vector<int> lost, present;
  for (int p = 0; p < size; ++p) (answered[p] ? present : lost).push_back(p);
  s.reporter = present.front() == rank;
  if (lost.empty()) {
    s.answer = fmt::format(
        "Roll call: every rank answered within {:.3g} s (none is lost: a rank is slow, or issued "
        "a different collective).",
        grace);
  } else {
    s.answer = fmt::format(
        "Roll call: {} did not answer within {:.3g} s (host down or cut off, or those ranks are "
        "hung); {} answered.",
        by_host(lost, s.rank_hosts), grace, by_host(present, s.rank_hosts));
  }
  return s.answer;
}

bool roll_call_reporter() {
  RollCall& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return !s.taken || s.reporter;
}

}  // namespace pft

// The collective half of `run.trace` (core/trace.h records; this aligns and merges).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pft {

class Communicator;

// This rank's steady clock minus rank 0's, in microseconds (Note [trace clocks] in core/trace.h).
// Collective; 0 on rank 0 and on one rank.
int64_t trace_clock_offset_us(Communicator& comm);

// Collective: every rank's recorded events (trace::take_events) go to rank 0, which writes one
// Chrome trace (JSON object format: "traceEvents", one process per rank named
// "rank <r> (<host>)", one track per lane) to `path` atomically (RunDir::write_file_atomic).
// Times are shifted by each rank's offset and start at 0 at the first event. Returns the number
// of events written on rank 0 (0 elsewhere).
int64_t write_merged_trace(Communicator& comm, int64_t clock_offset_us,
                           const std::vector<std::string>& rank_hosts,
                           const std::filesystem::path& path);

}  // namespace pft

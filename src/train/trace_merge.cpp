#include "train/trace_merge.h"

#include <boost/json.hpp>

#include <algorithm>
#include <limits>
#include <set>
#include <string>

#include "comm/communicator.h"
#include "core/error.h"
#include "core/format.h"
#include "core/run_dir.h"
#include "core/trace.h"

namespace pft {

namespace json = boost::json;

int64_t trace_clock_offset_us(Communicator& comm) {
  if (comm.size() <= 1) return 0;
  // Rank 0 reads its clock right before each broadcast, a rank right after it arrives: the
  // difference is the offset plus that broadcast's latency, so the smallest of a few is the best
  // estimate. The barrier first keeps a late rank's arrival out of it.
  constexpr int kRounds = 8;
  int64_t best = std::numeric_limits<int64_t>::max();
  for (int i = 0; i < kRounds; ++i) {
    comm.barrier();
    std::string root_us = comm.rank() == 0 ? std::to_string(trace::now_us()) : std::string();
    comm.broadcast_bytes(root_us, 0);
    const int64_t local = trace::now_us();
    best = std::min<int64_t>(best, local - static_cast<int64_t>(std::stoll(root_us)));
  }
  return comm.rank() == 0 ? 0 : best;
}

namespace {

// One rank's spans and samples as JSON, times already on rank 0's clock:
// {"spans": [[lane, name, begin, end, step, track], ...], "samples": [[name, time, value], ...]}.
std::string encode(const std::vector<trace::Event>& events,
                   const std::vector<trace::Sample>& samples, int64_t offset_us) {
  json::array a;
  a.reserve(events.size());
  for (const trace::Event& e : events)
    a.push_back(json::array{static_cast<int>(e.lane), e.name, e.begin_us - offset_us,
                            e.end_us - offset_us, e.step, e.track});
  json::array c;
  for (const trace::Sample& s : samples)
    c.push_back(json::array{s.name, s.time_us - offset_us, s.value});
  return json::serialize(json::object{{"spans", std::move(a)}, {"samples", std::move(c)}});
}

}  // namespace

int64_t write_merged_trace(Communicator& comm, int64_t clock_offset_us,
                           const std::vector<std::string>& rank_hosts,
                           const std::filesystem::path& path) {
  const std::vector<std::string> parts =
      comm.gather_bytes_to_root(
          encode(trace::take_events(), trace::take_samples(), clock_offset_us), 0);
  if (comm.rank() != 0) return 0;

  std::vector<json::array> ranks, rank_samples;
  int64_t origin = std::numeric_limits<int64_t>::max();
  for (const std::string& p : parts) {
    json::object o = json::parse(p).as_object();
    ranks.push_back(std::move(o.at("spans").as_array()));
    rank_samples.push_back(std::move(o.at("samples").as_array()));
    for (const json::value& e : ranks.back()) origin = std::min(origin, e.as_array()[2].as_int64());
  }
  // No span on any rank (the run's steps missed run.trace_from/trace_to): no file, so a resumed
  // run does not replace an earlier trace.json with an empty one.
  if (origin == std::numeric_limits<int64_t>::max()) return 0;

  json::array out;
  int64_t written = 0;
  for (size_t r = 0; r < ranks.size(); ++r) {
    const int pid = static_cast<int>(r);
    const std::string host = r < rank_hosts.size() ? rank_hosts[r] : std::string("?");
    out.push_back(json::object{{"ph", "M"}, {"name", "process_name"}, {"pid", pid}, {"tid", 0},
                               {"args", json::object{{"name", fmt::format("rank {} ({})", r, host)}}}});
    out.push_back(json::object{{"ph", "M"}, {"name", "process_sort_index"}, {"pid", pid},
                               {"tid", 0}, {"args", json::object{{"sort_index", pid}}}});
    // A track per lane, then the sub-tracks the spans use (Note [trace tracks]), each named
    // "<lane>: <its first span's name>" and sorted under its lane.
    const auto track = [&](int tid, const std::string& name, int64_t sort_index) {
      out.push_back(json::object{{"ph", "M"}, {"name", "thread_name"}, {"pid", pid}, {"tid", tid},
                                 {"args", json::object{{"name", name}}}});
      out.push_back(json::object{{"ph", "M"}, {"name", "thread_sort_index"}, {"pid", pid},
                                 {"tid", tid}, {"args", json::object{{"sort_index", sort_index}}}});
    };
    for (int lane = 0; lane < trace::kLanes; ++lane)
      track(lane, std::string(trace::lane_name(static_cast<trace::Lane>(lane))),
            trace::track_sort_index(static_cast<trace::Lane>(lane), 0));
    std::set<int> sub_tracks;
    for (const json::value& v : ranks[r]) {
      const json::array& e = v.as_array();
      const auto lane = static_cast<trace::Lane>(e[0].as_int64());
      const int sub = static_cast<int>(e[5].as_int64());
      if (sub == 0 || !sub_tracks.insert(trace::tid_of(lane, sub)).second) continue;
      track(trace::tid_of(lane, sub),
            fmt::format("{}: {}", trace::lane_name(lane), std::string_view(e[1].as_string())),
            trace::track_sort_index(lane, sub));
    }
    for (const json::value& v : ranks[r]) {
      const json::array& e = v.as_array();
      const int64_t begin = e[2].as_int64() - origin, end = e[3].as_int64() - origin;
      json::object ev{{"ph", "X"},
                      {"name", e[1].as_string()},
                      {"pid", pid},
                      {"tid", trace::tid_of(static_cast<trace::Lane>(e[0].as_int64()),
                                            static_cast<int>(e[5].as_int64()))},
                      {"ts", begin},
                      {"dur", std::max<int64_t>(end - begin, 0)}};
      if (e[4].as_int64() >= 0) ev["args"] = json::object{{"step", e[4].as_int64()}};
      out.push_back(std::move(ev));
      ++written;
    }
    // Counter tracks ("ph": "C"), one per sample name; "args" holds its one series (every
    // field there would be drawn as a series, so the step is not one).
    for (const json::value& v : rank_samples[r]) {
      const json::array& e = v.as_array();
      json::object ev{{"ph", "C"},
                      {"name", e[0].as_string()},
                      {"pid", pid},
                      {"tid", 0},
                      {"ts", std::max<int64_t>(e[1].as_int64() - origin, 0)},
                      {"args", json::object{{"value", e[2]}}}};
      out.push_back(std::move(ev));
    }
  }
  const json::object doc{{"traceEvents", std::move(out)},
                         {"displayTimeUnit", "ms"},
                         {"otherData", json::object{{"producer", "pft run.trace"},
                                                    {"clock", "rank 0's steady clock, us"}}}};
  try {
    RunDir::write_file_atomic(path, json::serialize(doc));
  } catch (const InputError& e) {
    throw RuntimeFailure(fmt::format("run.trace: {} (disk full?); the training itself finished "
                                     "and its checkpoints are written",
                                     e.what()));
  }
  return written;
}

}  // namespace pft

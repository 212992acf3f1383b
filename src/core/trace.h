// Timeline trace of a training run (`run.trace`): where each step's time went, per rank and per
// lane, written by rank 0 as one Chrome trace file (<run.dir>/trace.json, the JSON that Perfetto
// and chrome://tracing open; docs/observability.md, "Timeline trace").
//
// Recording is process-wide and cheap when off (one relaxed atomic load per span). When on, each
// span is one complete event ("ph": "X") appended under a mutex: begin and end in microseconds
// of this process's steady clock, a lane, a name and optionally a step. Lanes become the
// tracks ("threads") of a rank's process in the viewer. Spans may be recorded from any thread
// (the checkpoint writer's included).
//
// Note [trace clocks]: each rank's steady clock has its own zero (on other hosts, another
// machine's boot). Before training, every rank estimates its offset to rank 0's clock
// (train/trace_merge.h: rank 0 broadcasts its clock reading several times; a rank keeps the
// smallest local-minus-root difference, which is the offset plus the shortest broadcast latency,
// tens of microseconds on a network): spans are shifted by it when rank 0 merges them, so the
// ranks' tracks line up to well under a millisecond, far below a step.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pft::trace {

// The tracks of a rank, in display order.
enum class Lane : int {
  kStep = 0,         // one span per training step
  kData,             // waiting for the step's batches
  kForward,          // forward passes (and the loss)
  kBackward,         // backward passes
  kComm,             // each gradient bucket's all-reduce, from launch to observed completion
  kOptimizer,        // unscale, clip and the AdamW update (ZeRO-1's all-gather included)
  kControl,          // the controller's step boundary (its collectives: the ranks wait here)
  kEval,             // held-out evaluation
  kCheckpoint,       // the training thread's part of a save (snapshot, gathers)
  kCheckpointWrite,  // the background write of a checkpoint file
};
inline constexpr int kLanes = 10;
std::string_view lane_name(Lane lane);

struct Event {
  Lane lane = Lane::kStep;
  std::string name;
  int64_t begin_us = 0;  // this process's steady clock
  int64_t end_us = 0;
  int64_t step = -1;     // the training step it belongs to, when known
  int track = 0;         // Note [trace tracks]
};

// Note [trace tracks]: the Chrome trace format wants the spans of one track (pid, tid) nested;
// Perfetto drops spans that overlap without nesting. The gradient buckets' all-reduces do
// overlap (bucket 1 is launched before bucket 0 completes), so each bucket's span goes on a track
// of its own under its lane: track b + 1 of the all-reduce lane is bucket b, track 0 the step's
// wait for them. Every other lane's spans nest and use track 0. tid_of gives the viewer's tid:
// lane + kLanes x track, so a track's lane is tid % kLanes however many buckets there are (a
// model of a few billion parameters has hundreds), and track 0 is the lane itself.
inline int tid_of(Lane lane, int track) { return static_cast<int>(lane) + kLanes * track; }
// The order of a track in the viewer: under its lane, by track.
inline int64_t track_sort_index(Lane lane, int track) {
  return static_cast<int64_t>(lane) * 1000000 + track;
}

// Steady clock, microseconds. (PFT_TEST_TRACE_CLOCK_SKEW_US=RANK:US shifts it by US on the MPI
// rank RANK: the test of Note [trace clocks] gives one rank a clock of its own.)
int64_t now_us();

// On: spans are recorded from now on. Off (the default): spans cost one atomic load.
void set_enabled(bool on);
bool enabled();

// Appends one complete event (no-op when off).
void record(Lane lane, std::string_view name, int64_t begin_us, int64_t end_us, int64_t step = -1,
            int track = 0);
// The same, whether or not tracing is on now: for a span that began while it was on (a
// background checkpoint write that outlives the last traced step).
void record_unchecked(Lane lane, std::string_view name, int64_t begin_us, int64_t end_us,
                      int64_t step, int track);

// Takes the recorded events out (the buffer is empty afterwards).
std::vector<Event> take_events();

// A counter sample ("ph": "C"): the viewer draws each name as a graph under the rank's tracks.
// The trainer records rank 0's throughput, model TFLOP/s and MFU per step with the numbers it
// writes to metrics.jsonl (Note [model FLOPs] in train/flops.h), so trace and report agree.
struct Sample {
  std::string name;
  int64_t time_us = 0;  // this process's steady clock
  double value = 0.0;
};
void sample(std::string_view name, double value);  // at now_us(), when on
std::vector<Sample> take_samples();

// RAII span: records [construction, destruction) on `lane` when tracing is on.
class Span {
 public:
  Span(Lane lane, std::string_view name, int64_t step = -1)
      : on_(enabled()), lane_(lane), name_(name), step_(step), begin_(on_ ? now_us() : 0) {}
  ~Span() {
    if (on_) record_unchecked(lane_, name_, begin_, now_us(), step_, 0);
  }
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

 private:
  bool on_;
  Lane lane_;
  std::string_view name_;  // a literal or a string that outlives the span
  int64_t step_;
  int64_t begin_;
};

}  // namespace pft::trace

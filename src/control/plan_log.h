// The plan log: an audit of what every executed step trained on -- per step its phase, the world
// size, the task of each micro-batch slot and, per slot, the documents it packed (example index in
// the task's train split and template id). Nothing reads it back to train: plans are a function
// of the schedule state (Note [plans are a function of the state], control/schedule.h).
//
// Where it lives (Note [plan log]):
//   RUN_DIR/plan.jsonl   every step, one JSON line per step, appended by rank 0 (the whole audit);
//   rank 0's memory      the steps since the previous save, at most kPlanWindowSteps (the window);
//   checkpoints          that window under /controller/plan (docs/checkpoint-format.md).
// So neither a checkpoint nor rank 0's memory grows with the length of the run; plan.jsonl grows
// by a line per step (160 bytes for 4 slots and 8 documents), as metrics.jsonl grows by its
// records.
//
// Note [plan log]
// ~~~~~~~~~~~~~~~
// Every step must appear in plan.jsonl exactly once, however the run was interrupted and resumed.
//   - A step's line is written when the next step starts (it has then finished) or at the next
//     save, and flushed to the kernel, so a killed process loses none of the lines it wrote.
//   - At each save, before rank 0 hands the checkpoint to the saver, the file is fsync'd: a
//     checkpoint of step s that exists on disk implies that every line of a step < s is on disk.
//   - The checkpoint holds the window [f, s) (f = `first_step`): the steps written since the
//     previous save (the last kPlanWindowSteps of them when saves are rarer).
//   - Resuming from it (start()): lines of steps >= f are dropped -- a crash after the save
//     leaves lines of steps the resumed run trains again, and possibly a torn last line -- and the
//     window is appended again (the same lines, from the checkpoint), so the file ends at step
//     s-1 even when it lacked them (a checkpoint copied from another run directory). A fresh run
//     (train.resume: none) empties the file. Lines of steps < f stay as they are: the file had
//     them before that checkpoint existed. A file that lacks some of them (removed, or the
//     checkpoint comes from another run directory) is reported with a warning naming the gap.
// Truncation is in place (ftruncate, then append, then fsync): a crash in between leaves a prefix
// that the next start() repairs the same way.
#pragma once

#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace pft {

// Steps the window holds at most (rank 0's memory and each checkpoint's /controller/plan) when
// saves are rarer than this: bounded whatever checkpoint.every_steps is.
inline constexpr size_t kPlanWindowSteps = 1000;
// The audit file, in the run directory.
inline constexpr const char* kPlanFileName = "plan.jsonl";

// One executed step: a line of plan.jsonl,
//   {"step":12,"phase":0,"world_size":2,"slot_task":[0,3],"doc_example":[[17,4],[9]],
//    "doc_template":[[0,2],[1]]}
// doc_example[j] / doc_template[j]: the documents slot j packed, in order. Rank r trained slots
// [r*A, (r+1)*A), A = slots / world_size (data/loader.h).
struct PlanRecord {
  int64_t step = 0;
  int32_t phase = 0;
  int32_t world_size = 0;
  std::vector<int32_t> slot_task;
  std::vector<std::vector<int32_t>> doc_example;
  std::vector<std::vector<int32_t>> doc_template;
  bool operator==(const PlanRecord&) const = default;
};

// The window in the checkpoint's columns (/controller/plan/*): step-major, `slots` per step.
struct PlanLog {
  int64_t first_step = 0;  // steps before it are in plan.jsonl only (== step[0] when not empty)
  std::vector<int64_t> step;
  std::vector<int32_t> phase, world_size;
  std::vector<int32_t> slot_task;    // (steps, slots)
  std::vector<int32_t> slot_docs;    // (steps, slots): documents packed per slot
  std::vector<int32_t> doc_example;  // every document, step by step, slot by slot
  std::vector<int32_t> doc_template;
  int64_t slots = 0;
  bool operator==(const PlanLog&) const = default;
};

// Records <-> columns. to_columns: every record has `slots` slots. to_records throws
// std::invalid_argument when the columns' lengths disagree.
PlanLog to_columns(const std::deque<PlanRecord>& records, int64_t first_step, int64_t slots);
std::vector<PlanRecord> to_records(const PlanLog& log);

// One line of plan.jsonl (without the newline), and back: parse_plan_line throws
// std::invalid_argument saying what is wrong with it.
std::string plan_line(const PlanRecord& r);
PlanRecord parse_plan_line(std::string_view line);
// Every line of a plan.jsonl (tests, audits). Throws InputError naming the file and line.
std::vector<PlanRecord> read_plan_file(const std::filesystem::path& path);

// Rank 0's side of the plan log (Note [plan log]). Not thread-safe; the trainer's thread only.
// Write failures (a full disk) throw RuntimeFailure naming the file and the reason.
class PlanRecorder {
 public:
  // `path`: RUN_DIR/plan.jsonl; `slots`: micro-batch slots per step; `window_cap`: at most this
  // many steps kept (>= 1). Touches no file until start().
  PlanRecorder(std::filesystem::path path, int64_t slots, size_t window_cap = kPlanWindowSteps);
  ~PlanRecorder();
  PlanRecorder(const PlanRecorder&) = delete;
  PlanRecorder& operator=(const PlanRecorder&) = delete;

  // Before the first step, once: the run starts at `first_step`; `resumed` is the window of the
  // checkpoint it resumed from (nullptr for a fresh run). Opens (creates) the file, drops its
  // lines of steps >= the window's first step (all of them for a fresh run), appends the window
  // and fsyncs. Logs what it dropped and any gap before the window.
  void start(int64_t first_step, const PlanLog* resumed);
  // Step `r.step` is about to run: the lines of the steps before it are written.
  void record(PlanRecord r);
  // At a save after `steps_done` steps: writes every pending line, fsyncs the file, and returns
  // the window (the steps since the previous save, at most window_cap) for the checkpoint; the
  // next window starts empty.
  PlanLog save(int64_t steps_done);

  size_t window_steps() const { return window_.size(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  void write_before(int64_t step);  // lines of window steps < step not written yet
  void append_line(const PlanRecord& r);
  void sync();

  std::filesystem::path path_;
  int64_t slots_;
  size_t cap_;
  std::FILE* file_ = nullptr;
  std::deque<PlanRecord> window_;
  int64_t written_to_ = 0;  // every step before this one is in the file
};

}  // namespace pft

// TensorBoard event files (run.tensorboard: true): rank 0 turns every metrics.jsonl record into
// scalars and appends them to RUN_DIR/tensorboard/events.out.tfevents.<seconds>.<host>.<pid>,
// one new file per process start. docs/observability.md lists the tags; open them with
// `tensorboard --logdir RUN_DIR/tensorboard`.
//
// The file format is TensorFlow's: TFRecord framing (uint64 length, masked CRC32C of the length,
// the bytes, masked CRC32C of the bytes; all little-endian) around serialized Event messages,
// the first of which carries file_version "brain.Event:2". The messages come from protobuf
// (train/tensorboard_event.proto, wire-compatible with TensorFlow's event.proto and
// summary.proto); the CRC32C from Boost.CRC (Castagnoli polynomial 0x1EDC6F41, reflected: Debian
// bookworm has no crc32c library package), so nothing of the encoding is written by hand but the
// framing's four fields.
//
// Note [TensorBoard tags]
// ~~~~~~~~~~~~~~~~~~~~~~~
// The scalars are exactly metrics.jsonl's numbers (MetricsSink feeds every record it writes
// here), so the two never disagree and a field added to a record shows up in TensorBoard without
// a change here. Each record of a kind with a step maps its numeric fields, by kind:
//   train       train/<field>; task_loss[k] -> train/loss/<task k>, task_tokens[k] ->
//               train/target_tokens/<task k>
//   eval        per template: eval/<task>/<template_name>/<field>; "all": eval/<task>/<field>
//   mixture     mixture/<task> (the weights)
//   phase       schedule/phase (the phase's index)
//   checkpoint  checkpoint/<field>
//   end         end/<field>
// `step` is the event's step, `time` its wall time; booleans, strings, nulls (a non-finite loss)
// and eval's template index are not scalars. start, resume, stopped, preempted and eval_summary
// have no series (resume writes the marker of Note [TensorBoard and resume]). Values are float32
// (TensorBoard's simple_value): integers above 2^24 (comm_bytes, bytes) lose their low digits.
//
// Note [TensorBoard and resume]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A resumed run is a new process: it writes a new event file in the same directory (TensorBoard
// reads a directory's files in name order, and the name starts with the start time), and its
// steps continue from the checkpoint. A run killed after its last checkpoint wrote steps the
// resumed run writes again; metrics.jsonl keeps both (readers take the last record of a step).
// For TensorBoard the resumed run first writes a SessionLog START event at the first step it
// will write (checkpoint step + 1): TensorBoard's reader then drops the earlier points of that
// step and later, as it does for a restarted TensorFlow job, so each step is plotted once (an
// evaluation the killed run made after the checkpoint is dropped too: the resumed run's history
// is the one that counts). The resumed run also restates the schedule's phase and mixture at the
// checkpoint's step; when the directory already held event files (the run that wrote that step),
// those are not written again. Resumed into a fresh directory, they are the first points there.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pft {

struct TensorBoardScalar {
  std::string tag;
  double value = 0.0;  // written as float32
};

// The scalars of one metrics.jsonl record (Note [TensorBoard tags]); nullopt for a record with no
// series. `task_names`: the names of the train record's per-task arrays, in their order.
struct TensorBoardPoint {
  int64_t step = 0;
  std::vector<TensorBoardScalar> scalars;
};
std::optional<TensorBoardPoint> tensorboard_scalars(const boost::json::object& record,
                                                    const std::vector<std::string>& task_names);

// TFRecord's checksum of `bytes`: CRC32C, masked ((crc >> 15 | crc << 17) + 0xa282ead8) so
// that a CRC of data holding CRCs is not trivially related to them.
uint32_t tfrecord_masked_crc32c(std::string_view bytes);

// One event file. Not thread-safe. Writes are buffered until flush(); a failed write or flush
// throws RuntimeFailure naming the file (as a failed metrics.jsonl append does).
class EventFileWriter {
 public:
  // Creates `dir` when missing and a new file in it (never an existing one, never through a
  // link), and writes the file_version record. Throws InputError naming the path when it cannot.
  explicit EventFileWriter(const std::filesystem::path& dir);
  ~EventFileWriter();  // flushes; a failure there is logged (a destructor cannot throw)
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // One Event with a Summary of these scalars.
  void add_scalars(int64_t step, double wall_time, const std::vector<TensorBoardScalar>& scalars);
  // A SessionLog START at `step` (Note [TensorBoard and resume]).
  void add_session_start(int64_t step, double wall_time);
  void flush();

 private:
  void write_record(const std::string& data);

  std::FILE* file_ = nullptr;
  std::filesystem::path path_;
};

// What MetricsSink feeds: each record it writes (with its "time"), mapped and appended.
class TensorBoardWriter {
 public:
  TensorBoardWriter(const std::filesystem::path& dir, std::vector<std::string> task_names);

  const std::filesystem::path& path() const { return file_.path(); }
  void add(const boost::json::object& record);
  void flush() { file_.flush(); }

 private:
  bool continues_ = false;  // the directory held event files before this process's
  EventFileWriter file_;
  std::vector<std::string> task_names_;
  std::optional<int64_t> resumed_at_;  // the step of the checkpoint this process resumed from
};

}  // namespace pft

// Readers: JSONL files and Super-NaturalInstructions task files -> records of a task.
//
// A record holds the text of each of the task's fields (data/task.h: the field map says which
// JSON key each comes from) and the list of acceptable answers. Every input problem names where
// it is ("file:line:col" for JSONL, "file: Instances[i]" for natinst) and why, and goes to a
// Problems sink: in strict mode (data.strict, the default) the first one throws pft::InputError;
// in lenient mode the record is skipped and counted by reason, and the caller prints a summary.
// Every rank reads the same files in the same order, so the counts agree across ranks.
//
// A JSONL line is bad when it: is over kMaxLineBytes (refused without being held in memory),
// holds a NUL byte or invalid UTF-8, is not one JSON object, lacks a field the task reads (and
// the field is not optional), has a field of the wrong type (fields are strings, numbers are
// taken as written; the answer field may also be a non-empty list of strings: several
// acceptable answers), has a key the task does not read when the task says `extra_fields:
// error`, or (classification) has an answer outside the labels. Blank lines are skipped
// silently; a file with no record at all is a problem ("empty file"). A UTF-8 byte-order mark
// and CRLF line ends are accepted.
//
// File-level problems (unreadable file, a natinst file that is not valid JSON or lacks
// Definition / Instances) always throw: there is nothing to skip to.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "data/task.h"

namespace pft {

// Longest JSONL line accepted, in bytes (without the newline). A longer line is refused with a
// message saying so; it is never read into memory whole.
inline constexpr size_t kMaxLineBytes = size_t{1} << 20;  // 1 MiB

struct Record {
  std::vector<std::string> values;      // (task.fields.size()) constant fields left empty
  std::vector<std::string> references;  // acceptable answers, >= 1; [0] is the one trained on
  std::string id;                       // the record's "id" key, when it has one
  std::string origin;                   // "file:line" or "file: Instances[i]"
};

// What reading skipped (lenient mode) and why.
struct LoadReport {
  static constexpr size_t kMaxMessages = 20;
  int64_t records = 0;                     // kept
  int64_t problems = 0;                    // skipped records + empty files
  std::map<std::string, int64_t> reasons;  // short reason ("malformed JSON") -> count
  std::vector<std::string> messages;       // the first kMaxMessages full messages

  void merge(const LoadReport& other);
  // "3 problems (2 malformed JSON, 1 missing field)", or "" when there were none.
  std::string summary() const;
};

// Where problems go: strict throws the first, lenient counts them all.
class Problems {
 public:
  Problems(bool strict, LoadReport& report) : strict_(strict), report_(report) {}
  // `reason`: a short class for the summary; `message`: the full "where: error: ..." text.
  void report(const std::string& reason, const std::string& message);
  bool strict() const { return strict_; }
  LoadReport& load_report() { return report_; }

 private:
  bool strict_;
  LoadReport& report_;
};

// The files a source path stands for: the file itself, or a directory's *.jsonl files in name
// order. Throws InputError for a directory without any.
std::vector<std::filesystem::path> jsonl_files(const std::filesystem::path& path);

// Reads JSONL records of `task` from `files`, in order.
std::vector<Record> read_jsonl(const Task& task, const std::vector<std::filesystem::path>& files,
                               Problems& problems);

struct NatinstData {
  std::string definition;                 // Definition (a list is joined with newlines)
  std::vector<Record> instances;          // references = every acceptable output
  std::vector<Record> positive_examples;  // the few-shot pool; explanation filled
};

// Reads a Super-NaturalInstructions task file for `task` (format natinst).
NatinstData read_natinst(const Task& task, const std::filesystem::path& file, Problems& problems);

}  // namespace pft

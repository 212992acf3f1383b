// Validation of a config's task data, as `pft data validate` reports it: every task of
// data.tasks read (bad records collected, not thrown), every example of every split rendered
// under every template of that split with data.tokenizer, and checked:
//   - errors (fatal in any mode): a missing task file, a task file or tokenizer that does not
//     load, an example whose template renders no answer token (nothing to train on);
//   - bad records (fatal with data.strict: true, else skipped by training), with their file:line;
//   - notes: a template whose prompt/answer boundary the tokenizer would merge across
//     (docs/tasks.md, "Part boundaries"), checked once per template on the split's first example.
// Per (task, split) it counts examples, templates, truncated renders and tokens.
//
// Reads only data.* (and run.seed for few-shot picks). Local and deterministic: every rank that
// calls it gets the same result. Throws nothing for bad data (it is in the result); only
// unexpected failures propagate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace pft {

struct DataValidation {
  std::string table;                  // header + one row per (task, split), ends in '\n'
  std::vector<std::string> notes;     // "file:line:col: note: ..."
  std::vector<std::string> skipped;   // bad records ("file:line: ..."), and "... and N more"
  std::vector<std::string> errors;    // "file:line:col: error: ..."
  int64_t tasks = 0;                  // task files listed
  int64_t bad_records = 0;
  bool strict = true;                 // data.strict

  bool failed() const { return !errors.empty() || (strict && bad_records > 0); }
  // The closing line: "data: N task(s) valid", "data: valid; N bad record(s) would be skipped
  // ...", or "data: invalid: ..." (with a hint when data.strict stopped it).
  std::string summary() const;
};

DataValidation validate_task_data(const Config& config);

// `s` in double quotes with newlines and quotes escaped, for one-line display of texts.
std::string quoted_for_display(const std::string& s);

}  // namespace pft

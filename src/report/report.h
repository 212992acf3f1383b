// `pft report RUN_DIR [-o FILE]`: one self-contained HTML page of a run's metrics.jsonl
// (docs/observability.md, "pft report"): training loss overall and per task, held-out metrics per
// task and per template (held-out templates marked, the worst template highlighted), mixture
// weights with phase bands, throughput and communication wait, checkpoint and evaluation marks.
//
// Note [report page]
// ~~~~~~~~~~~~~~~~~~
// The page works offline and `pft` needs no data file at run time: Chart.js
// (third_party/chartjs/) and the page's script (report/report.js) are compiled into the binary
// (report/embed_file.cmake) and written inline. The records go in as one JSON blob in a
// <script type="application/json"> element, every '<' written as \u003c so no string in them
// ("</script>" in a task name, say) can end the element early. The script draws the charts and
// then writes what it drew into data attributes (report.js's header), which is what the
// headless-browser test (tests/report/) reads back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

namespace pft::report {

// A line of metrics.jsonl that did not parse: skipped, as every reader of metrics.jsonl skips it
// (Note [a line cut by a kill], core/run_dir.h), and named in the page and on stderr.
struct SkippedLine {
  size_t line = 0;  // 1-based
  std::string reason;
};

struct Report {
  std::string html;
  size_t records = 0;
  std::vector<SkippedLine> skipped;
  std::vector<std::string> notes;  // what the page could not show (a trace.json it cannot read)
  std::optional<std::pair<int64_t, int64_t>> timeline_steps;  // the steps of the trace timeline
};

struct RenderOptions {
  // The steps [A, B] of trace.json the timeline shows (Note [report timeline]); default: the
  // last three traced before the final one.
  std::optional<std::pair<int64_t, int64_t>> trace_steps;
};

// The page of RUN_DIR/metrics.jsonl (and a timeline of RUN_DIR/trace.json when there is one).
// Throws InputError when RUN_DIR has no metrics.jsonl (a sweep directory is told apart and
// pointed at its trials) or when no line of it parses.
Report render_report(const std::filesystem::path& run_dir, const RenderOptions& options = {});

// JSON text made safe inside a <script> element: every '<' as \u003c (outside strings JSON has
// no '<', so only strings change, and they decode to the same text).
std::string escape_script_json(const std::string& json);

// Shared with the sweep page (report/sweep_report.h), so both pages load the same Chart.js and
// report errors the same way: the embedded Chart.js, the <head> script that collects every error
// into window.pftErrors and #pft-status, the page's base style, and text escaped for HTML.
std::string_view chart_js();
// report/page.js: the helpers both pages' scripts use (written before the page's own script).
std::string_view page_js();
const char* error_hook_js();
const char* base_style();
std::string escape_html(const std::string& text);

}  // namespace pft::report

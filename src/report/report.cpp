#include "report/report.h"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <system_error>

#include "core/error.h"
#include "core/format.h"
#include "core/trace.h"
#include "sweep/sweep_dir.h"

namespace pft::report {

// report/embed_file.cmake's output (Note [report page]).
extern const char kChartJs[];
extern const std::size_t kChartJs_size;
extern const char kReportJs[];
extern const std::size_t kReportJs_size;
extern const char kPageJs[];
extern const std::size_t kPageJs_size;

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// Escapes text for HTML element content and attribute values.
std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Runs first (in <head>, before Chart.js): every uncaught error, rejected promise and
// console.error lands in window.pftErrors and in #pft-errors, and turns #pft-status to "error".
constexpr const char* kErrorHook = R"JS(
window.pftErrors = [];
window.pftRecordError = function (what) {
  window.pftErrors.push(String(what));
  var run = function () {
    var list = document.getElementById('pft-errors');
    if (list) { var li = document.createElement('li'); li.textContent = String(what); list.appendChild(li); }
    var status = document.getElementById('pft-status');
    if (status) { status.dataset.state = 'error'; status.dataset.errors = String(window.pftErrors.length); }
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', run); else run();
};
window.addEventListener('error', function (e) {
  window.pftRecordError('error: ' + e.message + ' (' + e.filename + ':' + e.lineno + ')');
});
window.addEventListener('unhandledrejection', function (e) {
  window.pftRecordError('unhandled rejection: ' + e.reason);
});
(function () {
  var original = console.error;
  console.error = function () {
    window.pftRecordError('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
})();
)JS";

constexpr const char* kStyle = R"CSS(
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
h2 { font-size: 1.05em; margin: 0.2em 0; }
.meta { color: #555; font-size: 0.9em; }
.note { color: #666; font-size: 0.8em; margin: 0 0 0.3em 0; }
#pft-charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(620px, 1fr)); gap: 1.2em; }
.pft-chart { border: 1px solid #ddd; border-radius: 4px; padding: 0.6em; height: 340px; display: flex; flex-direction: column; }
.pft-chart canvas { flex: 1; min-height: 0; }
.pft-wide { grid-column: 1 / -1; }
#pft-errors { color: #b00; }
.skipped { color: #8a5a00; }
)CSS";

// Note [report timeline]: the page draws a few steps of RUN_DIR/trace.json (run.trace) as a
// timeline, one row per rank and lane: the last three steps traced before the final one (the final
// step holds the run's last evaluation and checkpoint, which would dwarf the steps), so a
// steady-state step is what one sees; `pft report --trace-steps A:B` picks others. The buckets'
// all-reduce sub-tracks are drawn in their lane's row (they overlap there). A span that
// crosses the window's edge (a background checkpoint write, say) is cut at the edge. The whole
// trace stays in trace.json for Perfetto; the page carries only the window.
constexpr size_t kMaxTimelineSpans = 20000;
constexpr int64_t kMaxTimelineRanks = 16;             // rows: ranks x lanes
constexpr uintmax_t kMaxTraceBytes = uintmax_t{1} << 30;  // read whole: the timeline skips more

json::object trace_window(const fs::path& path, std::optional<std::pair<int64_t, int64_t>> steps,
                          std::string* problem) {
  std::error_code size_ec;
  if (const uintmax_t bytes = fs::file_size(path, size_ec); !size_ec && bytes > kMaxTraceBytes) {
    *problem = fmt::format("{}: {:.1f} GiB, more than the report reads ({} GiB); no timeline. "
                           "Open it in Perfetto, or trace fewer steps (run.trace_from / trace_to)",
                           path.string(), static_cast<double>(bytes) / (1 << 30),
                           kMaxTraceBytes >> 30);
    return {};
  }
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  const json::value doc = json::parse(text, ec);
  const json::object* root = ec ? nullptr : doc.if_object();
  const json::value* events_v = root ? root->if_contains("traceEvents") : nullptr;
  if (!events_v || !events_v->is_array()) {
    *problem = fmt::format("{}: not a Chrome trace of `run.trace` ({}); no timeline",
                           path.string(), ec ? ec.message() : "no traceEvents array");
    return {};
  }
  struct Span {
    int64_t rank, lane, begin, end, step;
    std::string name;
  };
  std::map<int64_t, std::string> ranks;
  std::map<int64_t, std::string> lanes;
  std::vector<Span> spans;
  std::set<int64_t> step_ids;
  const auto num = [](const json::object& o, const char* k) -> std::optional<int64_t> {
    const json::value* v = o.if_contains(k);
    if (!v) return std::nullopt;
    if (v->is_int64()) return v->as_int64();
    // Integers beyond 2^53 or non-finite doubles are no time a trace holds: skipped, not cast.
    constexpr double kLimit = 9007199254740992.0;
    if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(kLimit))
      return static_cast<int64_t>(v->as_uint64());
    if (v->is_double() && std::abs(v->as_double()) <= kLimit)
      return static_cast<int64_t>(v->as_double());
    return std::nullopt;
  };
  for (const json::value& v : events_v->as_array()) {
    const json::object* e = v.if_object();
    if (!e) continue;
    const json::value* ph = e->if_contains("ph");
    const json::value* name = e->if_contains("name");
    const auto pid = num(*e, "pid"), tid = num(*e, "tid");
    if (!ph || !ph->is_string() || !name || !name->is_string() || !pid || !tid) continue;
    const json::object* args = e->contains("args") ? e->at("args").if_object() : nullptr;
    if (ph->as_string() == "M") {
      const json::value* n = args ? args->if_contains("name") : nullptr;
      if (!n || !n->is_string()) continue;
      if (name->as_string() == "process_name") ranks[*pid] = std::string(n->as_string());
      if (name->as_string() == "thread_name" && *tid < trace::kLanes)
        lanes[*tid] = std::string(n->as_string());
      continue;
    }
    const auto ts = num(*e, "ts"), dur = num(*e, "dur");
    if (ph->as_string() != "X" || !ts || !dur || *dur < 0 || *tid < 0) continue;
    const auto step = args ? num(*args, "step") : std::nullopt;
    // A sub-track (Note [trace tracks]: a gradient bucket's) is drawn in its lane's row.
    const int64_t lane = *tid % trace::kLanes;
    spans.push_back({*pid, lane, *ts, *ts + *dur, step.value_or(-1), std::string(name->as_string())});
    if (*tid == 0 && step) step_ids.insert(*step);  // lane 0: the step spans (core/trace.h)
  }
  if (step_ids.empty()) {
    *problem = fmt::format("{}: no step was traced (run.trace_from / run.trace_to); no timeline",
                           path.string());
    return {};
  }
  int64_t from = 0, to = 0;
  if (steps) {  // what of A..B the trace holds
    from = std::max(steps->first, *step_ids.begin());
    to = std::min(steps->second, *step_ids.rbegin());
  } else {
    std::vector<int64_t> ids(step_ids.begin(), step_ids.end());
    if (ids.size() > 3) ids.pop_back();  // not the final step
    to = ids.back();
    from = ids[ids.size() >= 3 ? ids.size() - 3 : 0];
  }
  // The window: from the first rank's start of step `from` to the first rank's start of step
  // `to` + 1 (the steps' boundaries, evaluations and saves between them included); for the last
  // traced step, to the end of its step and step-boundary spans. Longer spans are cut there.
  constexpr int64_t kControlLane = static_cast<int64_t>(trace::Lane::kControl);
  int64_t t0 = std::numeric_limits<int64_t>::max(), t1 = std::numeric_limits<int64_t>::max();
  int64_t last_end = std::numeric_limits<int64_t>::min();
  for (const Span& sp : spans) {
    if (sp.lane == 0 && sp.step >= from && sp.step <= to) t0 = std::min(t0, sp.begin);
    if (sp.lane == 0 && sp.step == to + 1) t1 = std::min(t1, sp.begin);
    if ((sp.lane == 0 || sp.lane == kControlLane) && sp.step == to) last_end = std::max(last_end, sp.end);
  }
  if (t1 == std::numeric_limits<int64_t>::max()) t1 = last_end;
  if (from > to || t0 > t1) {
    *problem = fmt::format("{}: steps {}-{} are not in the trace (it has steps {}-{}); no timeline",
                           path.string(), steps ? steps->first : from, steps ? steps->second : to,
                           *step_ids.begin(), *step_ids.rbegin());
    return {};
  }
  json::array out;
  size_t in_window = 0;
  bool ranks_cut = false;
  for (const Span& sp : spans) {
    if (sp.end <= t0 || sp.begin >= t1) continue;
    if (sp.rank >= kMaxTimelineRanks) {
      ranks_cut = true;
      continue;
    }
    if (++in_window > kMaxTimelineSpans) continue;
    out.push_back(json::array{sp.rank, sp.lane, sp.name,
                              static_cast<double>(std::max(sp.begin, t0) - t0) / 1000.0,
                              static_cast<double>(std::min(sp.end, t1) - t0) / 1000.0, sp.step});
  }
  json::object w;
  w["from_step"] = from;
  w["to_step"] = to;
  w["first_step"] = *step_ids.begin();
  w["last_step"] = *step_ids.rbegin();
  w["window_ms"] = static_cast<double>(t1 - t0) / 1000.0;
  w["spans_in_window"] = in_window;
  json::object rank_names, lane_names;
  for (const auto& [k, v] : ranks) rank_names[std::to_string(k)] = v;
  for (const auto& [k, v] : lanes) lane_names[std::to_string(k)] = v;
  w["ranks"] = std::move(rank_names);
  w["lanes"] = std::move(lane_names);
  w["spans"] = std::move(out);
  if (in_window > kMaxTimelineSpans)
    *problem = fmt::format("{}: {} spans in steps {}-{}; the timeline shows the first {}",
                           path.string(), in_window, from, to, kMaxTimelineSpans);
  if (ranks_cut)
    *problem = fmt::format("{}: the timeline shows ranks 0-{} of {} (Perfetto shows them all)",
                           path.string(), kMaxTimelineRanks - 1, ranks.size());
  return w;
}

}  // namespace

std::string escape_script_json(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '<') out += "\\u003c";
    else out += c;
  }
  return out;
}

std::string_view chart_js() { return {kChartJs, kChartJs_size}; }
std::string_view page_js() { return {kPageJs, kPageJs_size}; }
const char* error_hook_js() { return kErrorHook; }
const char* base_style() { return kStyle; }
std::string escape_html(const std::string& text) { return html_escape(text); }

Report render_report(const fs::path& run_dir, const RenderOptions& options) {
  const fs::path metrics = run_dir / "metrics.jsonl";
  std::error_code ec;
  if (!fs::is_regular_file(metrics, ec)) {
    if (fs::is_regular_file(run_dir / "sweep.jsonl", ec))
      throw InputError(fmt::format(
          "{} is a sweep directory (it has sweep.jsonl, no metrics.jsonl): its page is "
          "report::write_sweep_report's (`pft report {}`); one trial's is `pft report "
          "{}/trials/<trial>`",
          run_dir.string(), run_dir.string(), run_dir.string()));
    if (!fs::is_directory(run_dir, ec))
      throw InputError(fmt::format("{}: no such run directory (give the run.dir of a `pft train` run)",
                                   run_dir.string()));
    throw InputError(fmt::format("{} has no metrics.jsonl: is it the run.dir of a `pft train` run "
                                 "that has started?", run_dir.string()));
  }
  std::ifstream in(metrics);
  if (!in) throw InputError(fmt::format("{}: cannot be read", metrics.string()));

  Report report;
  json::array records;
  size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    std::optional<json::object> o = sweep::parse_json_line(line);
    if (!o) {
      report.skipped.push_back({line_no, "not a JSON object (a line cut by a kill?)"});
      continue;
    }
    const auto kind = o->find("kind");
    if (kind == o->end() || !kind->value().is_string()) {
      report.skipped.push_back({line_no, "no \"kind\" string"});
      continue;
    }
    records.emplace_back(std::move(*o));
  }
  if (records.empty())
    throw InputError(fmt::format("{}: no record to report ({} lines, none a metrics record)",
                                 metrics.string(), line_no));
  report.records = records.size();

  json::object blob;
  blob["run_dir"] = run_dir.string();
  blob["records"] = std::move(records);
  json::array skipped;
  for (const SkippedLine& s : report.skipped) {
    json::object o;
    o["line"] = s.line;
    o["reason"] = s.reason;
    skipped.emplace_back(std::move(o));
  }
  blob["skipped"] = std::move(skipped);
  const fs::path trace = run_dir / "trace.json";
  if (fs::is_regular_file(trace, ec)) {
    std::string problem;
    json::object w = trace_window(trace, options.trace_steps, &problem);
    if (!problem.empty() && options.trace_steps && w.empty())
      throw InputError(fmt::format("--trace-steps {}:{}: {}", options.trace_steps->first,
                                   options.trace_steps->second, problem));
    if (!problem.empty()) report.notes.push_back(problem);
    if (!w.empty()) {
      std::error_code mt_ec;
      const auto mtime = fs::last_write_time(trace, mt_ec);
      if (!mt_ec)  // seconds since the epoch: the page compares it with the run's start
        w["mtime"] = std::chrono::duration<double>(
                         std::chrono::file_clock::to_sys(mtime).time_since_epoch())
                         .count();
      report.timeline_steps = {w["from_step"].as_int64(), w["to_step"].as_int64()};
      blob["trace"] = std::move(w);
    }
  } else if (options.trace_steps) {
    throw InputError(fmt::format("--trace-steps: {} has no trace.json (train with run.trace: true)",
                                 run_dir.string()));
  }

  const std::string title = html_escape(fs::absolute(run_dir).lexically_normal().string());
  std::string& h = report.html;
  h.reserve(kChartJs_size + kPageJs_size + kReportJs_size + 4096);
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<title>pft report: " + title + "</title>\n";
  h += "<style>";
  h += kStyle;
  h += "</style>\n<script>";
  h += kErrorHook;
  h += "</script>\n</head>\n<body>\n";
  h += "<h1>pft report</h1>\n<p class=\"meta\">" + title + "/metrics.jsonl: " +
       std::to_string(report.records) + " records. Bands: phases; solid green lines: checkpoints; "
       "dotted blue lines: evaluations; dashed red lines: resumes.</p>\n";
  for (const std::string& n : report.notes) h += "<p class=\"skipped\">" + html_escape(n) + "</p>\n";
  if (!report.skipped.empty()) {
    h += "<p class=\"skipped\">Skipped lines of metrics.jsonl that did not parse:";
    for (const SkippedLine& s : report.skipped)
      h += " " + std::to_string(s.line) + " (" + html_escape(s.reason) + ")";
    h += "</p>\n";
  }
  h += "<div id=\"pft-status\" data-state=\"loading\" data-errors=\"0\">loading</div>\n";
  h += "<ul id=\"pft-errors\"></ul>\n<div id=\"pft-charts\"></div>\n";
  h += "<script>\n";
  h.append(kChartJs, kChartJs_size);
  h += "</script>\n<script type=\"application/json\" id=\"pft-data\">";
  h += escape_script_json(json::serialize(blob));
  h += "</script>\n<script>\n";
  h.append(kPageJs, kPageJs_size);
  h.append(kReportJs, kReportJs_size);
  h += "</script>\n</body>\n</html>\n";
  return report;
}

}  // namespace pft::report

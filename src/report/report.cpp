#include "report/report.h"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <fstream>
#include <system_error>

#include "core/error.h"
#include "core/format.h"
#include "sweep/sweep_dir.h"

namespace pft::report {

// report/embed_file.cmake's output (Note [report page]).
extern const char kChartJs[];
extern const std::size_t kChartJs_size;
extern const char kReportJs[];
extern const std::size_t kReportJs_size;

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
#pft-errors { color: #b00; }
.skipped { color: #8a5a00; }
)CSS";

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
const char* error_hook_js() { return kErrorHook; }
const char* base_style() { return kStyle; }
std::string escape_html(const std::string& text) { return html_escape(text); }

Report render_report(const fs::path& run_dir) {
  const fs::path metrics = run_dir / "metrics.jsonl";
  std::error_code ec;
  if (!fs::is_regular_file(metrics, ec)) {
    if (fs::is_regular_file(run_dir / "sweep.jsonl", ec))
      throw InputError(fmt::format(
          "{} is a sweep directory (it has sweep.jsonl, no metrics.jsonl): `pft sweep status {}` "
          "writes its objective.html; for one trial's report run `pft report {}/trials/<trial>`",
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

  const std::string title = html_escape(fs::absolute(run_dir).lexically_normal().string());
  std::string& h = report.html;
  h.reserve(kChartJs_size + kReportJs_size + 4096);
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
  h.append(kReportJs, kReportJs_size);
  h += "</script>\n</body>\n</html>\n";
  return report;
}

}  // namespace pft::report

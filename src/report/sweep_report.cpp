#include "report/sweep_report.h"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <system_error>

#include "core/error.h"
#include "core/format.h"
#include "core/run_dir.h"
#include "report/report.h"
#include "sweep/results.h"
#include "sweep/sweep_dir.h"

namespace pft::report {

// report/embed_file.cmake's output (Note [report page]).
extern const char kSweepReportJs[];
extern const std::size_t kSweepReportJs_size;

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// A number, or null when not finite (JSON has no NaN; Boost.JSON would write one anyway).
json::value number(double v) {
  if (!std::isfinite(v)) return nullptr;
  return v;
}

// A relative path as an href: '/'-separated, every byte outside RFC 3986's unreserved set (and
// '/') percent-encoded, so a space or '#' in a directory name cannot break the link.
std::string href(const fs::path& relative) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : relative.generic_string()) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The training loss of a trial over steps from its metrics.jsonl `train` records (a later record
// of a step replaces an earlier one: a resumed trial redoes the steps after its checkpoint, Note
// [report resume] in report/report.js), and the lines that did not parse.
struct TrialLoss {
  std::map<int64_t, double> loss;         // NaN where the loss was not finite (written as null)
  std::vector<std::string> skipped;       // "FILE:LINE: skipped: why"
  std::optional<std::string> unreadable;  // the file exists but cannot be read
};

TrialLoss read_trial_loss(const fs::path& metrics) {
  TrialLoss out;
  std::error_code ec;
  if (!fs::exists(metrics, ec)) return out;  // not started yet
  std::ifstream in(metrics);
  if (!in || !fs::is_regular_file(metrics, ec)) {
    out.unreadable = fmt::format("{}: cannot be read", metrics.string());
    return out;
  }
  size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    const std::optional<json::object> o = sweep::parse_json_line(line);
    const json::value* kind = o ? o->if_contains("kind") : nullptr;
    if (!kind || !kind->is_string()) {
      out.skipped.push_back(
          fmt::format("{}:{}: skipped: {}", metrics.string(), line_no,
                      o ? "no \"kind\" string" : "not a JSON object (a line cut by a kill?)"));
      continue;
    }
    if (kind->as_string() != "train") continue;
    const json::value* step = o->if_contains("step");
    const json::value* loss = o->if_contains("loss");
    if (!step || !step->is_int64() || !loss) continue;
    out.loss[step->as_int64()] =
        loss->is_number() ? loss->to_number<double>() : std::nan("");  // null: NaN written
  }
  return out;
}

// A trial's own run report, written next to its metrics.jsonl.
struct TrialPage {
  fs::path page;      // empty when none was written
  std::string error;  // why not, when the trial has a metrics.jsonl (a pending trial has none)
  std::vector<std::string> notes;  // what its page could not show (a trace.json it cannot read)
};

TrialPage write_trial_report(const fs::path& trial_dir) {
  std::error_code ec;
  if (!fs::is_regular_file(trial_dir / "metrics.jsonl", ec)) return {};
  try {
    const Report r = render_report(trial_dir);
    const fs::path page = trial_dir / "report.html";
    RunDir::write_file_atomic(page, r.html);
    return {page, "", r.notes};
  } catch (const InputError& e) {
    return {{}, e.what(), {}};
  }
}

}  // namespace

ReportDirKind report_dir_kind(const fs::path& dir) {
  std::error_code ec;
  const std::string holds =
      "a run directory (run.dir of `pft train`) holds metrics.jsonl; a sweep directory (the "
      "--dir of `pft sweep run`) holds sweep.yaml and sweep.jsonl";
  if (!fs::exists(dir, ec))
    throw InputError(fmt::format("{}: no such run or sweep directory ({})", dir.string(), holds));
  if (!fs::is_directory(dir, ec))
    throw InputError(fmt::format("{} is not a directory: give a run or a sweep directory ({})",
                                 dir.string(), holds));
  if (fs::is_regular_file(dir / "sweep.yaml", ec)) return ReportDirKind::kSweep;
  if (fs::is_regular_file(dir / "metrics.jsonl", ec)) return ReportDirKind::kRun;
  if (fs::is_regular_file(dir / "sweep.jsonl", ec))
    throw InputError(fmt::format(
        "{} has sweep.jsonl but no sweep.yaml: a sweep directory holds both (`pft sweep run` "
        "writes sweep.yaml first); was it copied in part? ({})",
        dir.string(), holds));
  throw InputError(
      fmt::format("{} has no metrics.jsonl and no sweep.yaml: it is neither a run "
                  "nor a sweep directory ({})",
                  dir.string(), holds));
}

SweepReport write_sweep_report(const fs::path& sweep_dir, const fs::path& out) {
  const sweep::SweepDir dir(sweep_dir);
  const sweep::SweepSpec spec = dir.load_spec();
  const std::vector<sweep::Trial> trials = sweep::expand(spec);
  const std::vector<sweep::TrialStatus> rows = sweep::collect_status(spec, trials, dir);
  const std::vector<size_t> order = sweep::rank_trials(rows, spec.objective);
  // The best trial as best.yaml names it (sweep/results.h write_best): the first in the ranking
  // when it ended (finished or stopped) with a finite objective.
  std::optional<size_t> best;
  if (!order.empty()) {
    const sweep::TrialStatus& s = rows[order.front()];
    if ((s.state == sweep::TrialState::kFinished || s.state == sweep::TrialState::kStopped) &&
        s.progress.objective && std::isfinite(*s.progress.objective))
      best = order.front();
  }

  SweepReport report;
  report.trials = rows.size();
  const fs::path page_dir = fs::absolute(out).lexically_normal().parent_path();
  std::vector<std::string> keys;
  for (const sweep::Trial& t : trials)
    for (const auto& [k, v] : t.params)
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);

  json::array trial_blobs;
  std::string table;
  for (size_t r = 0; r < order.size(); ++r) {
    const sweep::TrialStatus& s = rows[order[r]];
    const std::string& id = s.trial.id;
    const fs::path trial_dir = dir.trial(id);
    const TrialLoss loss = read_trial_loss(trial_dir / "metrics.jsonl");
    std::vector<std::string> notes;  // problems reading the trial, shown in its row
    for (const std::string& w : loss.skipped) {
      report.warnings.push_back(w);
      notes.push_back("unreadable line " + w);
    }
    if (loss.unreadable) {
      report.warnings.push_back(fmt::format("trial {}: {}", id, *loss.unreadable));
      notes.push_back("unreadable: " + *loss.unreadable);
    }
    const TrialPage page = write_trial_report(trial_dir);
    std::string link;
    if (!page.page.empty()) {
      ++report.trial_reports;
      link = href(page.page.lexically_relative(page_dir));
      for (const std::string& n : page.notes) report.warnings.push_back(fmt::format("trial {}: {}", id, n));
    } else if (!page.error.empty()) {
      report.warnings.push_back(fmt::format("trial {}: no run report: {}", id, page.error));
      notes.push_back("no run report: " + page.error);
    }

    json::object t;
    t["id"] = id;
    t["rank"] = r + 1;
    json::object params;
    for (const auto& [k, v] : s.trial.params) params[k] = v;
    t["params"] = std::move(params);
    t["state"] = sweep::state_name(s.state);
    t["steps"] = std::max<int64_t>(0, s.progress.steps);
    t["objective"] = s.progress.objective ? number(*s.progress.objective) : json::value(nullptr);
    t["best"] = best == order[r];
    json::array curve, loss_points;
    for (const auto& [step, v] : s.progress.curve) curve.emplace_back(json::array{step, number(v)});
    for (const auto& [step, v] : loss.loss) loss_points.emplace_back(json::array{step, number(v)});
    t["curve"] = std::move(curve);
    t["loss"] = std::move(loss_points);
    trial_blobs.emplace_back(std::move(t));

    // The row: what `pft sweep status` prints, plus the link, the message and the notes.
    const bool is_best = best == order[r];
    table +=
        fmt::format("<tr class=\"pft-trial state-{}{}\" data-trial=\"{}\" data-state=\"{}\"{}>",
                    sweep::state_name(s.state), is_best ? " best" : "", escape_html(id),
                    sweep::state_name(s.state), is_best ? " data-best=\"true\"" : "");
    table += fmt::format(
        "<td>{}</td><td>{}{}</td>", r + 1,
        link.empty() ? escape_html(id)
                     : fmt::format("<a href=\"{}\">{}</a>", escape_html(link), escape_html(id)),
        is_best ? " <span class=\"best-mark\">&#9733; best</span>" : "");
    for (const std::string& k : keys) {
      std::string v;
      for (const auto& [pk, pv] : s.trial.params)
        if (pk == k) v = pv;
      table += "<td>" + escape_html(v) + "</td>";
    }
    table += fmt::format("<td>{}</td><td class=\"num\">{}</td>", sweep::state_name(s.state),
                         std::max<int64_t>(0, s.progress.steps));
    table += s.progress.objective
                 ? fmt::format(
                       "<td class=\"num\" data-objective=\"{:.17g}\">{:.4f} <span "
                       "class=\"note\">(step {})</span></td>",
                       *s.progress.objective, *s.progress.objective, s.progress.objective_step)
                 : std::string("<td class=\"num\">-</td>");
    std::string message = s.message;
    for (const std::string& n : notes) message += (message.empty() ? "" : "; ") + n;
    table += "<td class=\"message\">" + escape_html(message) + "</td></tr>\n";
  }

  json::object blob;
  blob["sweep_dir"] = dir.root().string();
  blob["metric"] = spec.objective.metric;
  blob["higher_is_better"] = spec.objective.higher_is_better;
  json::array key_array;
  for (const std::string& k : keys) key_array.emplace_back(k);
  blob["keys"] = std::move(key_array);
  blob["trials"] = std::move(trial_blobs);

  size_t ended = 0;
  for (const sweep::TrialStatus& s : rows)
    if (s.state == sweep::TrialState::kFinished || s.state == sweep::TrialState::kStopped ||
        s.state == sweep::TrialState::kFailed)
      ++ended;
  const std::string title = escape_html(dir.root().lexically_normal().string());
  const std::string metric =
      escape_html(spec.objective.metric) +
      (spec.objective.higher_is_better ? " (higher is better)" : " (lower is better)");
  std::string h;
  const std::string_view chart = chart_js();
  h.reserve(chart.size() + kSweepReportJs_size + table.size() + 8192);
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<title>pft sweep report: " + title + "</title>\n<style>";
  h += base_style();
  h += R"CSS(
table.trials { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0 1.2em 0; }
table.trials th, table.trials td { padding: 3px 9px; border-bottom: 1px solid #e4e4e4; text-align: left; }
table.trials td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.trials tr.best td { background: #fff4d6; font-weight: bold; }
table.trials tr.state-failed td { color: #a00; }
table.trials tr.state-stopped td { color: #777; }
table.trials td.message { font-weight: normal; max-width: 48em; }
.best-mark { color: #b8860b; }
)CSS";
  h += "</style>\n<script>";
  h += error_hook_js();
  h += "</script>\n</head>\n<body>\n";
  h += "<h1>pft sweep report</h1>\n<p class=\"meta\">" + title + ": " +
       std::to_string(rows.size()) + " trials, " + std::to_string(ended) + " ended; objective " +
       metric +
       ". The same ranking as <code>pft sweep status</code>; a "
       "trial's id links to its own run report.</p>\n";
  h += "<table class=\"trials\" id=\"pft-trials\"><thead><tr><th>rank</th><th>trial</th>";
  for (const std::string& k : keys) h += "<th>" + escape_html(k) + "</th>";
  h += "<th>state</th><th>steps</th><th>" + escape_html(spec.objective.metric) +
       " at the last evaluation</th><th>message</th></tr></thead>\n<tbody>\n";
  h += table;
  h += "</tbody></table>\n";
  h += "<div id=\"pft-status\" data-state=\"loading\" data-errors=\"0\">loading</div>\n";
  h += "<ul id=\"pft-errors\"></ul>\n<div id=\"pft-charts\"></div>\n<script>\n";
  h.append(chart.data(), chart.size());
  h += "</script>\n<script type=\"application/json\" id=\"pft-data\">";
  h += escape_script_json(json::serialize(blob));
  h += "</script>\n<script>\n";
  h.append(page_js());
  h.append(kSweepReportJs, kSweepReportJs_size);
  h += "</script>\n</body>\n</html>\n";
  RunDir::write_file_atomic(out, h);  // InputError naming the file when it cannot
  return report;
}

}  // namespace pft::report

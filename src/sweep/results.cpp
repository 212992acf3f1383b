#include "sweep/results.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <boost/json/object.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/run_dir.h"

namespace pft::sweep {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

std::optional<double> number_field(const json::object& o, const char* key) {
  const auto it = o.find(key);
  if (it == o.end()) return std::nullopt;
  if (it->value().is_null()) return std::numeric_limits<double>::quiet_NaN();  // NaN written
  if (!it->value().is_number()) return std::nullopt;
  return it->value().to_number<double>();
}

// The objective from one evaluation's per-task "all" records (see the header).
std::optional<double> objective_of(const std::map<std::string, json::object>& tasks,
                                   const std::string& key) {
  const size_t dot = key.rfind('.');
  if (dot != std::string::npos) {
    const auto it = tasks.find(key.substr(0, dot));
    if (it == tasks.end()) return std::nullopt;
    return number_field(it->second, key.substr(dot + 1).c_str());
  }
  double sum = 0.0;
  int n = 0;
  for (const auto& [task, rec] : tasks) {
    const std::optional<double> tokens = number_field(rec, "tokens");
    if (!tokens || !(*tokens > 0)) continue;
    if (const auto v = number_field(rec, key.c_str())) {
      sum += *v;
      ++n;
    }
  }
  if (n == 0) return std::nullopt;
  return sum / n;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

// A process that exists and is not a zombie (a killed trial whose parent, the sweep, died too
// may stay a zombie until init reaps it).
bool pid_alive(long pid) {
  if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  const size_t paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() || text[paren + 2] != 'Z';
}

bool better(double a, double b, bool higher) { return higher ? a > b : a < b; }

std::string fmt_value(double v) {
  if (!std::isfinite(v)) return fmt::format("{}", v);
  return fmt::format("{:.4f}", v);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Whether the process that started a trial (`started` event's host and pid: the `pft sweep run`
// or `pft sweep trial` that waits for it) is alive; it outlives the trial, and covers the moment
// before the trial's `pft train` has taken its run.lock.
bool runner_alive(const TrialEvent& e) {
  if (e.kind != "started") return false;
  const auto host = e.extra.find("host");
  const auto pid = e.extra.find("pid");
  if (host == e.extra.end() || pid == e.extra.end() || !host->value().is_string() ||
      !pid->value().is_int64())
    return false;
  if (host->value().as_string() != host_name()) return true;  // another host's: believed
  return pid_alive(static_cast<long>(pid->value().as_int64()));
}

}  // namespace

bool run_lock_held(const fs::path& run_dir) {
  std::ifstream in(run_dir / "run.lock");
  std::string line;
  if (!std::getline(in, line) || line.empty()) return false;
  std::string host;
  long pid = 0;
  std::istringstream words(line);
  for (std::string w; words >> w;) {
    if (w.starts_with("host=")) host = w.substr(5);
    if (w.starts_with("pid=")) pid = std::strtol(w.c_str() + 4, nullptr, 10);
  }
  if (host != host_name()) return !host.empty();  // another host's: believed
  return pid_alive(pid);
}

TrialProgress read_trial_progress(const fs::path& metrics_jsonl, const Objective& objective) {
  TrialProgress p;
  std::map<int64_t, std::map<std::string, json::object>> evals;  // step -> task -> "all" record
  std::ifstream in(metrics_jsonl);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    std::optional<json::object> o = parse_json_line(line);
    if (!o) continue;
    const auto kind = o->find("kind");
    if (kind == o->end() || !kind->value().is_string()) continue;
    const std::string k = kind->value().as_string().c_str();
    const auto step_it = o->find("step");
    const int64_t step =
        step_it != o->end() && step_it->value().is_int64() ? step_it->value().as_int64() : -1;
    if (k == "train") {
      p.steps = step;
      const std::optional<double> loss = number_field(*o, "loss");
      if (loss && !std::isfinite(*loss) && !p.divergence)
        p.divergence = fmt::format("training loss {} at step {}", *loss, step);
    } else if (k == "eval") {
      const auto tmpl = o->find("template");
      const auto task = o->find("task");
      if (tmpl == o->end() || !tmpl->value().is_string() || tmpl->value().as_string() != "all" ||
          task == o->end() || !task->value().is_string())
        continue;
      evals[step][task->value().as_string().c_str()] = std::move(*o);
    } else if (k == "end") {
      p.ended = true;
      const auto why = o->find("stopped");
      p.stopped = why != o->end() && why->value().is_string() ? why->value().as_string().c_str() : "";
    } else if (k == "start") {
      p.ended = false;  // a rerun (resume) of the run started again
      p.stopped.clear();
    }
  }
  for (const auto& [step, tasks] : evals) {
    if (const std::optional<double> v = objective_of(tasks, objective.key)) {
      p.curve.emplace_back(step, *v);
      p.objective = *v;
      p.objective_step = step;
    }
  }
  return p;
}

const char* state_name(TrialState s) {
  switch (s) {
    case TrialState::kPending: return "pending";
    case TrialState::kRunning: return "running";
    case TrialState::kInterrupted: return "interrupted";
    case TrialState::kFinished: return "finished";
    case TrialState::kStopped: return "stopped";
    case TrialState::kFailed: return "failed";
  }
  return "?";
}

std::vector<TrialStatus> collect_status(const SweepSpec& spec, const std::vector<Trial>& trials,
                                        const SweepDir& dir) {
  const std::map<std::string, TrialEvent> last = last_events(read_events(dir.events()));
  std::vector<TrialStatus> out;
  for (const Trial& t : trials) {
    TrialStatus s;
    s.trial = t;
    s.progress = read_trial_progress(dir.trial(t.id) / "metrics.jsonl", spec.objective);
    const auto it = last.find(t.id);
    if (it == last.end()) {
      s.state = run_lock_held(dir.trial(t.id)) ? TrialState::kRunning : TrialState::kPending;
    } else if (it->second.kind == "finished") {
      s.state = TrialState::kFinished;
    } else if (it->second.kind == "stopped") {
      s.state = TrialState::kStopped;
    } else if (it->second.kind == "failed") {
      s.state = TrialState::kFailed;
      s.message = it->second.message;
    } else {
      s.state = run_lock_held(dir.trial(t.id)) || runner_alive(it->second)
                    ? TrialState::kRunning
                    : TrialState::kInterrupted;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<size_t> rank_trials(const std::vector<TrialStatus>& rows, const Objective& objective) {
  const auto group = [](const TrialStatus& s) {
    switch (s.state) {
      case TrialState::kFinished:
      case TrialState::kStopped: return 0;
      case TrialState::kRunning:
      case TrialState::kInterrupted: return 1;
      case TrialState::kPending: return 2;
      case TrialState::kFailed: return 3;
    }
    return 3;
  };
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const TrialStatus &x = rows[a], &y = rows[b];
    if (group(x) != group(y)) return group(x) < group(y);
    const bool fx = x.progress.objective && std::isfinite(*x.progress.objective);
    const bool fy = y.progress.objective && std::isfinite(*y.progress.objective);
    if (fx != fy) return fx;
    if (fx && *x.progress.objective != *y.progress.objective)
      return better(*x.progress.objective, *y.progress.objective, objective.higher_is_better);
    return x.trial.id < y.trial.id;
  });
  return order;
}

std::string format_status_table(const SweepSpec& spec, const std::vector<TrialStatus>& rows,
                                const std::vector<size_t>& order) {
  std::vector<std::string> header = {"rank", "trial"};
  std::vector<std::string> keys;
  if (!rows.empty())
    for (const auto& [k, v] : rows.front().trial.params) keys.push_back(k);
  for (const std::string& k : keys) header.push_back(k);
  header.push_back(spec.objective.metric + (spec.objective.higher_is_better ? " (max)" : " (min)"));
  header.push_back("steps");
  header.push_back("state");
  std::vector<std::vector<std::string>> table = {header};
  for (size_t r = 0; r < order.size(); ++r) {
    const TrialStatus& s = rows[order[r]];
    std::vector<std::string> row = {std::to_string(r + 1), s.trial.id};
    for (const auto& [k, v] : s.trial.params) row.push_back(v);
    row.push_back(s.progress.objective ? fmt_value(*s.progress.objective) : "-");
    row.push_back(std::to_string(std::max<int64_t>(0, s.progress.steps)));
    row.push_back(state_name(s.state));
    table.push_back(std::move(row));
  }
  std::vector<size_t> width(header.size(), 0);
  for (const auto& row : table)
    for (size_t c = 0; c < row.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], row[c].size());
  std::string out;
  for (const auto& row : table) {
    std::string line;
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      // Numbers and ranks right-aligned, names left.
      const bool right = c == 0 || c + 3 == header.size() || c + 2 == header.size();
      line += right ? fmt::format("{:>{}}", row[c], width[c]) : fmt::format("{:<{}}", row[c], width[c]);
      if (c + 1 < row.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  for (size_t r = 0; r < order.size(); ++r) {
    const TrialStatus& s = rows[order[r]];
    if (s.state == TrialState::kFailed)
      out += fmt::format("{} failed: {}\n", s.trial.id, s.message);
  }
  return out;
}

std::optional<size_t> write_best(const SweepDir& dir, const std::vector<TrialStatus>& rows,
                                 const std::vector<size_t>& order) {
  if (order.empty()) return std::nullopt;
  const size_t i = order.front();
  const TrialStatus& s = rows[i];
  if ((s.state != TrialState::kFinished && s.state != TrialState::kStopped) ||
      !s.progress.objective || !std::isfinite(*s.progress.objective))
    return std::nullopt;
  const fs::path resolved = dir.trial(s.trial.id) / "config.resolved.yaml";
  std::ifstream in(resolved, std::ios::binary);
  if (!in)
    throw InputError(fmt::format("the best trial {} has no {}: was its run directory removed?",
                                 s.trial.id, resolved.string()));
  std::ostringstream text;
  text << in.rdbuf();
  RunDir::write_file_atomic(
      dir.best(), fmt::format("# pft sweep {}: best trial {} ({}), objective {}\n{}",
                              dir.root().string(), s.trial.id, params_text(s.trial),
                              fmt_value(*s.progress.objective), text.str()));
  return i;
}

void write_objective_plot(const SweepDir& dir, const SweepSpec& spec,
                          const std::vector<TrialStatus>& rows, const std::vector<size_t>& order) {
  // Plot area in SVG units.
  constexpr double kW = 720, kH = 400, kLeft = 70, kRight = 20, kTop = 20, kBottom = 45;
  static constexpr const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                            "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  double x_max = 1, y_min = std::numeric_limits<double>::infinity(), y_max = -y_min;
  for (const TrialStatus& s : rows)
    for (const auto& [step, v] : s.progress.curve) {
      if (!std::isfinite(v)) continue;
      x_max = std::max(x_max, static_cast<double>(step));
      y_min = std::min(y_min, v);
      y_max = std::max(y_max, v);
    }
  if (!std::isfinite(y_min)) y_min = 0, y_max = 1;
  if (y_max - y_min < 1e-12) y_min -= 0.5, y_max += 0.5;
  const double pad = 0.05 * (y_max - y_min);
  y_min -= pad;
  y_max += pad;
  const auto px = [&](double step) { return kLeft + (kW - kLeft - kRight) * step / x_max; };
  const auto py = [&](double v) { return kTop + (kH - kTop - kBottom) * (y_max - v) / (y_max - y_min); };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect x=\"{2}\" y=\"{3}\" width=\"{4}\" height=\"{5}\" fill=\"none\" stroke=\"#999\"/>\n",
      kW, kH, kLeft, kTop, kW - kLeft - kRight, kH - kTop - kBottom);
  for (int i = 0; i <= 4; ++i) {
    const double v = y_min + (y_max - y_min) * i / 4.0;
    const double step = x_max * i / 4.0;
    svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#eee\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.4g}</text>\n",
                       kLeft, kW - kRight, py(v), kLeft - 5, py(v) + 4, v);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.0f}</text>\n",
                       px(step), kH - kBottom + 16, step);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n",
                     (kLeft + kW - kRight) / 2, kH - 8);
  svg += fmt::format("<text x=\"14\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {0})\">{1}</text>\n",
                     (kTop + kH - kBottom) / 2, html_escape(spec.objective.metric));
  std::string legend;
  for (size_t r = 0; r < order.size(); ++r) {
    const TrialStatus& s = rows[order[r]];
    const char* color = kColors[r % std::size(kColors)];
    std::string points;
    std::pair<double, double> last{-1, -1};
    for (const auto& [step, v] : s.progress.curve) {
      if (!std::isfinite(v)) continue;
      points += fmt::format("{:.1f},{:.1f} ", px(static_cast<double>(step)), py(v));
      last = {px(static_cast<double>(step)), py(v)};
    }
    const bool failed = s.state == TrialState::kFailed;
    if (!points.empty()) {
      svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{}\">"
                         "<title>{} ({})</title></polyline>\n",
                         color, failed ? " stroke-dasharray=\"5,4\"" : "", points, s.trial.id,
                         html_escape(params_text(s.trial)));
      if (s.state == TrialState::kStopped)
        svg += fmt::format("<path d=\"M{0:.1f} {1:.1f} l8 8 m0 -8 l-8 8\" stroke=\"{2}\" "
                           "stroke-width=\"2\" transform=\"translate(-4 -4)\"/>\n",
                           last.first, last.second, color);
    }
    legend += fmt::format(
        "<tr><td style=\"color:{}\">&#9632;</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{}</td></tr>\n",
        color, r + 1, s.trial.id, html_escape(params_text(s.trial)),
        s.progress.objective ? fmt_value(*s.progress.objective) : "-", s.progress.steps,
        html_escape(state_name(s.state)) +
            (s.message.empty() ? "" : ": " + html_escape(s.message)));
  }
  svg += "</svg>\n";
  const std::string html = fmt::format(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pft sweep {0}</title>\n"
      "<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;text-align:left}}</style>"
      "</head><body>\n<h3>{1} ({2}) over steps: {0}</h3>\n{3}"
      "<table><tr><th></th><th>rank</th><th>trial</th><th>parameters</th><th>objective</th>"
      "<th>steps</th><th>state</th></tr>\n{4}</table>\n</body></html>\n",
      html_escape(dir.root().string()), html_escape(spec.objective.metric),
      spec.objective.higher_is_better ? "higher is better" : "lower is better", svg, legend);
  RunDir::write_file_atomic(dir.plot(), html);
}

std::string refresh_results(const SweepSpec& spec, const std::vector<Trial>& trials,
                            const SweepDir& dir) {
  const std::vector<TrialStatus> rows = collect_status(spec, trials, dir);
  const std::vector<size_t> order = rank_trials(rows, spec.objective);
  write_best(dir, rows, order);
  write_objective_plot(dir, spec, rows, order);
  return format_status_table(spec, rows, order);
}

}  // namespace pft::sweep

// Held-out evaluation (contract: train/evaluate.h).
#include "train/evaluate.h"

#include <boost/algorithm/string/trim.hpp>

#include <algorithm>
#include <cmath>
#include <map>

#include "comm/communicator.h"
#include "core/format.h"
#include "data/document_source.h"
#include "model/adapters.h"
#include "model/transformer.h"
#include "train/generate.h"
#include "train/loss.h"
#include "data/tokenizer.h"
#include "train/eval_references.h"
#include "train/task_source.h"

namespace pft {

double TaskEval::worst_template_exact_match() const {
  double worst = 1.0;
  for (const TemplateLoss& t : templates)
    if (t.scored > 0) worst = std::min(worst, t.exact_match());
  return worst;
}

double TaskEval::worst_template_accuracy() const {
  double worst = 1.0;
  for (const TemplateLoss& t : templates)
    if (t.classified > 0) worst = std::min(worst, t.accuracy());
  return worst;
}

namespace {

// Note [trimmed evaluation batches]
// Evaluation fills one document per row (TaskTokenSource::fill_documents / fill_sequences), each
// row padded to data.seq_len with a pad run of its own. Held-out documents are usually far shorter
// than a row, and the last micro-batch of a template may have rows without a document. The
// forward therefore runs on the batch cut to the rows that hold a document and to the longest
// document's positions, without doc_ids: with one document per row, plain causal attention gives
// every real token exactly the keys it had (the padding comes after it), so the fast causal path
// runs; outputs at padding positions are never read (loss_mask 0). The logits shrink from
// (rows, seq_len, V) to (documents, longest, V) -- at seq_len 512 and a 49k vocabulary, about
// 100 MB per row before. Losses equal the untrimmed ones up to float rounding.
Batch trimmed_to_documents(const Batch& b, int64_t documents) {
  const int64_t rows = std::min<int64_t>(documents, b.input_ids.size(0));
  const at::Tensor real = b.task_ids.narrow(0, 0, rows).ge(0);  // padding has task id -1
  const int64_t used = std::max<int64_t>(1, real.sum(1).max().item<int64_t>());
  const auto cut = [&](const at::Tensor& t) {
    return t.narrow(0, 0, rows).narrow(1, 0, used).contiguous();
  };
  Batch out;
  out.input_ids = cut(b.input_ids);
  out.targets = cut(b.targets);
  out.loss_mask = cut(b.loss_mask);
  out.position_ids = cut(b.position_ids);
  out.task_ids = cut(b.task_ids);
  return out;  // doc_ids undefined: one document per row, causal attention
}

// Exact match of documents `docs` of `split` (task block `block`): greedy continuations of their
// prompts against their answers, kGenerateBatch prompts per batch (of about one length). Adds to
// t.scored / t.exact.
constexpr size_t kGenerateBatch = 32;

void score_exact_match(DocumentSource& split, const std::vector<int64_t>& docs, int64_t block,
                       const EvalOptions& o, TemplateLoss& t) {
  TransformerImpl& model = *o.model;
  const ModelSpec& spec = model.spec();
  const auto& adapters = model.adapters();
  const bool prefix = adapters && adapters->spec().prefix;
  const int64_t room = spec.max_seq_len - (prefix ? adapters->spec().prefix_tokens : 0);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<std::vector<int32_t>>> answers;  // per prompt: every reference
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  size_t longest_answer = 0;
  for (int64_t doc : docs) {
    split.read(doc, tokens, mask);
    const auto first = static_cast<size_t>(std::find(mask.begin(), mask.end(), 1) - mask.begin());
    if (first == 0 || first >= tokens.size()) continue;  // no prompt, or no answer
    std::vector<int32_t> answer(tokens.begin() + static_cast<std::ptrdiff_t>(first), tokens.end());
    if (!answer.empty() && answer.back() == o.eos_id) answer.pop_back();
    if (static_cast<int64_t>(tokens.size()) + 1 > room) continue;  // no room to generate it
    prompts.emplace_back(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(first));
    longest_answer = std::max(longest_answer, answer.size());
    answers.push_back({std::move(answer)});
    const int32_t slots = split.num_templates();
    if (o.references != nullptr)
      if (const auto* others = o.references->others(static_cast<size_t>(block), doc / slots,
                                                    split.template_id(static_cast<int32_t>(doc % slots))))
        for (const std::vector<int32_t>& other : *others) {
          longest_answer = std::max(longest_answer, other.size());
          answers.back().push_back(other);
        }
  }
  const bool by_text = !o.stop.empty();
  Generator generator(model, by_text ? o.tokenizer : nullptr);
  if (prefix) generator.set_prefix_block(adapters->spec().blocks == 1 ? 0 : block);
  SamplingOptions s;
  s.max_new_tokens = o.max_new_tokens > 0 ? o.max_new_tokens
                                          : static_cast<int64_t>(longest_answer) + 1;  // + eos
  if (o.eos_id >= 0) s.eos_ids = {o.eos_id};
  s.stop = o.stop;
  // Every prompt of the template in one call: batched, sorted by length (train/generate.h).
  const std::vector<Generation> out =
      generator.generate_all(prompts, s, static_cast<int64_t>(kGenerateBatch));
  for (size_t i = 0; i < prompts.size(); ++i) {
    ++t.scored;
    t.exact += answer_matches(out[i], answers[i], by_text ? o.tokenizer : nullptr);
  }
}

// Classification accuracy of documents `docs` of `split` (template slot `slot`, `examples` of
// them considered): see the header. Adds to t.classified / t.correct.
constexpr size_t kMaxLabels = 64;

void score_classification(TaskTokenSource& tasks, size_t task, DocumentSource& split,
                          int32_t slot, int64_t examples, const std::vector<int64_t>& docs,
                          const EvalForward& forward, Batch& batch, TemplateLoss& t) {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  const auto answer_start = [&] {
    return static_cast<size_t>(std::find(mask.begin(), mask.end(), 1) - mask.begin());
  };
  // The candidates: distinct answers of the slot's documents (the same on every rank).
  std::map<std::vector<int32_t>, size_t> index;
  std::vector<std::vector<int32_t>> labels;
  for (int64_t ex = 0; ex < examples; ++ex) {
    split.read(split.document(ex, slot), tokens, mask);
    const size_t first = answer_start();
    if (first == 0 || first >= tokens.size()) continue;
    std::vector<int32_t> answer(tokens.begin() + static_cast<std::ptrdiff_t>(first), tokens.end());
    if (index.emplace(answer, labels.size()).second) labels.push_back(std::move(answer));
    if (labels.size() > kMaxLabels) return;  // not a label set
  }
  if (labels.size() < 2) return;
  const int64_t rows = batch.input_ids.size(0);
  std::vector<std::vector<int32_t>> row_tokens;
  std::vector<std::vector<uint8_t>> row_masks;
  std::vector<std::pair<size_t, size_t>> row_of;  // (document, label)
  std::vector<std::vector<double>> scores(docs.size(), std::vector<double>(labels.size(), 0.0));
  std::vector<size_t> truth(docs.size(), labels.size());
  const auto run = [&] {
    if (row_tokens.empty()) return;
    tasks.fill_sequences(task, row_tokens, row_masks, batch);
    const Batch cut = trimmed_to_documents(batch, static_cast<int64_t>(row_tokens.size()));
    // Log-probabilities of the answer positions only (the rest would be multiplied by 0).
    const at::Tensor logits = forward(cut);  // (B', T', V)
    const at::Tensor at_answer = cut.loss_mask.gt(0);
    const at::Tensor logp = at::log_softmax(logits.index({at_answer}).to(at::kFloat), -1)
                                .gather(-1, cut.targets.index({at_answer}).unsqueeze(-1))
                                .squeeze(-1);  // (answer positions)
    const at::Tensor per_row = at::zeros(cut.loss_mask.sizes(), logp.options())
                                   .index_put_({at_answer}, logp)
                                   .sum(1)
                                   .to(at::kDouble)
                                   .cpu();
    const double* p = per_row.data_ptr<double>();
    for (size_t r = 0; r < row_of.size(); ++r) scores[row_of[r].first][row_of[r].second] = p[r];
    row_tokens.clear();
    row_masks.clear();
    row_of.clear();
  };
  for (size_t d = 0; d < docs.size(); ++d) {
    split.read(docs[d], tokens, mask);
    const size_t first = answer_start();
    if (first == 0 || first >= tokens.size()) continue;
    const std::vector<int32_t> answer(tokens.begin() + static_cast<std::ptrdiff_t>(first),
                                      tokens.end());
    truth[d] = index.at(answer);
    for (size_t l = 0; l < labels.size(); ++l) {
      std::vector<int32_t> seq(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(first));
      seq.insert(seq.end(), labels[l].begin(), labels[l].end());
      std::vector<uint8_t> m(seq.size(), 0);
      std::fill(m.begin() + static_cast<std::ptrdiff_t>(first), m.end(), 1);
      row_tokens.push_back(std::move(seq));
      row_masks.push_back(std::move(m));
      row_of.emplace_back(d, l);
      if (static_cast<int64_t>(row_tokens.size()) == rows) run();
    }
  }
  run();
  for (size_t d = 0; d < docs.size(); ++d) {
    if (truth[d] == labels.size()) continue;
    const auto best = static_cast<size_t>(
        std::max_element(scores[d].begin(), scores[d].end()) - scores[d].begin());
    ++t.classified;
    t.correct += best == truth[d] ? 1 : 0;
  }
}

}  // namespace

bool answer_matches(const Generation& g, const std::vector<std::vector<int32_t>>& answers,
                    const Tokenizer* text) {
  for (const std::vector<int32_t>& answer : answers) {
    if (text == nullptr ? g.tokens == answer
                        : boost::algorithm::trim_copy(g.text) ==
                              boost::algorithm::trim_copy(text->decode(answer)))
      return true;
  }
  return false;
}

double TaskEval::worst_template_loss() const {
  double worst = 0.0;
  for (const TemplateLoss& t : templates)
    if (t.tokens > 0) worst = std::max(worst, t.loss());
  return worst;
}

std::vector<TaskEval> evaluate_held_out(TaskTokenSource& tasks, const EvalForward& forward,
                                        Batch& batch, const EvalOptions& o) {
  at::NoGradGuard no_grad;
  const int64_t rows = batch.input_ids.size(0);
  std::vector<TaskEval> out;
  std::vector<double> sums;  // per (task, template): loss_sum, tokens, documents
  for (size_t k = 0; k < tasks.task_names().size(); ++k) {
    DocumentSource* split = tasks.validation(k);
    if (split == nullptr || split->num_examples() == 0) continue;
    TaskEval e;
    e.task = tasks.task_names()[k];
    int64_t examples = split->num_examples();
    // The cap is global: the same first examples on any number of ranks (see the header).
    if (o.max_batches > 0) examples = std::min(examples, o.max_batches * rows);
    for (int32_t slot = 0; slot < split->num_templates(); ++slot) {
      TemplateLoss t;
      t.template_id = split->template_id(slot);
      t.label = tasks.template_label(k, t.template_id);
      std::vector<int64_t> docs, mine;
      const auto run = [&] {
        if (docs.empty()) return;
        tasks.fill_documents(k, *split, docs, batch);
        const Batch cut = trimmed_to_documents(batch, static_cast<int64_t>(docs.size()));
        at::Tensor logits = forward(cut);
        const LossSums s = masked_cross_entropy(logits, cut, 0, /*consume_logits=*/true);
        t.loss_sum += s.loss_sum.item<double>();
        t.tokens += cut.loss_mask.sum().item<double>();
        t.documents += static_cast<int64_t>(docs.size());
        mine.insert(mine.end(), docs.begin(), docs.end());
        docs.clear();
      };
      for (int64_t ex = o.rank; ex < examples; ex += o.world_size) {
        docs.push_back(split->document(ex, slot));
        if (static_cast<int64_t>(docs.size()) == rows) run();
      }
      run();
      const Metric metric = tasks.metric(k);
      if (o.model != nullptr && metric != Metric::kLoss)
        score_exact_match(*split, mine, static_cast<int64_t>(k), o, t);
      if (metric == Metric::kClassification)
        score_classification(tasks, k, *split, slot, examples, mine, forward, batch, t);
      e.templates.push_back(t);
      sums.insert(sums.end(), {t.loss_sum, t.tokens, static_cast<double>(t.documents),
                               static_cast<double>(t.scored), static_cast<double>(t.exact),
                               static_cast<double>(t.classified), static_cast<double>(t.correct)});
    }
    out.push_back(std::move(e));
  }
  if (o.comm != nullptr && o.comm->size() > 1 && !sums.empty()) {
    at::Tensor all = at::tensor(sums, at::kDouble);
    o.comm->all_reduce(all, ReduceOp::kSum);
    const double* p = all.data_ptr<double>();
    size_t i = 0;
    for (TaskEval& e : out)
      for (TemplateLoss& t : e.templates) {
        t.loss_sum = p[i];
        t.tokens = p[i + 1];
        t.documents = static_cast<int64_t>(p[i + 2]);
        t.scored = static_cast<int64_t>(p[i + 3]);
        t.exact = static_cast<int64_t>(p[i + 4]);
        t.classified = static_cast<int64_t>(p[i + 5]);
        t.correct = static_cast<int64_t>(p[i + 6]);
        i += 7;
      }
  }
  for (TaskEval& e : out)
    for (const TemplateLoss& t : e.templates) {
      e.loss_sum += t.loss_sum;
      e.tokens += t.tokens;
      e.documents += t.documents;
      e.scored += t.scored;
      e.exact += t.exact;
      e.classified += t.classified;
      e.correct += t.correct;
    }
  return out;
}

std::vector<std::string> format_template_table(const std::vector<TaskEval>& evals, int64_t step) {
  std::vector<std::string> lines;
  if (evals.empty()) return lines;
  size_t width = 4;
  for (const TaskEval& e : evals) width = std::max(width, e.task.size());
  const std::string head = fmt::format("per template at step {}: ", step);
  lines.push_back(fmt::format("{}{:<{}}  exact match (accuracy for classification, loss when "
                              "neither); * = held out of training",
                              head, "task", width));
  const std::string indent(head.size(), ' ');
  for (const TaskEval& e : evals) {
    std::string row;
    for (const TemplateLoss& t : e.templates) {
      const std::string value =
          t.classified > 0 ? fmt::format("{:.1f}%", 100.0 * t.accuracy())
          : t.scored > 0   ? fmt::format("{:.1f}%", 100.0 * t.exact_match())
                           : fmt::format("{:.3f}", t.loss());
      row += fmt::format("  {} {:>6}", t.label, value);
    }
    lines.push_back(fmt::format("{}{:<{}}{}", indent, e.task, width, row));
  }
  return lines;
}

MetricTable metric_table(const std::vector<TaskEval>& evals) {
  MetricTable table;
  std::map<std::string, std::pair<double, int>> mean;
  const auto put = [&](const std::string& task, const std::string& metric, double value) {
    table[task + "." + metric] = value;
    auto& [sum, n] = mean[metric];
    sum += value;
    ++n;
  };
  for (const TaskEval& e : evals) {
    if (e.tokens <= 0) continue;
    put(e.task, "loss", e.loss());
    put(e.task, "perplexity", std::exp(e.loss()));
    put(e.task, "worst_template_loss", e.worst_template_loss());
    if (e.scored > 0) {
      put(e.task, "exact_match", e.exact_match());
      put(e.task, "worst_template_exact_match", e.worst_template_exact_match());
    }
    if (e.classified > 0) {
      put(e.task, "accuracy", e.accuracy());
      put(e.task, "worst_template_accuracy", e.worst_template_accuracy());
    }
  }
  for (const auto& [metric, sn] : mean) table[metric] = sn.first / sn.second;
  return table;
}

std::vector<std::string> format_eval_table(const std::vector<TaskEval>& evals, int64_t step) {
  std::vector<std::string> lines;
  if (evals.empty()) return lines;
  size_t width = 15;  // "mean over tasks"
  for (const TaskEval& e : evals) width = std::max(width, e.task.size());
  const std::string head = fmt::format("held-out at step {}: ", step);
  const std::string indent(head.size(), ' ');
  const auto percent = [](int64_t scored, double value) {
    return scored > 0 ? fmt::format("{:.1f}%", 100.0 * value) : std::string("-");
  };
  lines.push_back(fmt::format("{}{:<{}}  {:>5}  {:>7}  {:>8}  {:>10}  {:>7}  {:>10}  {:>7}  {:>4}",
                              head, "task", width, "docs", "loss", "ppl", "worst tmpl", "exact",
                              "worst tmpl", "acc", "tmpl"));
  double loss = 0.0, exact = 0.0, accuracy = 0.0;
  int64_t scored_tasks = 0, classified_tasks = 0;
  for (const TaskEval& e : evals) {
    loss += e.loss();
    if (e.scored > 0) {
      exact += e.exact_match();
      ++scored_tasks;
    }
    if (e.classified > 0) {
      accuracy += e.accuracy();
      ++classified_tasks;
    }
    lines.push_back(fmt::format(
        "{}{:<{}}  {:>5}  {:>7.4f}  {:>8.3f}  {:>10.4f}  {:>7}  {:>10}  {:>7}  {:>4}", indent,
        e.task, width, e.documents, e.loss(), std::exp(e.loss()), e.worst_template_loss(),
        percent(e.scored, e.exact_match()), percent(e.scored, e.worst_template_exact_match()),
        percent(e.classified, e.accuracy()), e.templates.size()));
  }
  loss /= static_cast<double>(evals.size());
  lines.push_back(fmt::format(
      "{}{:<{}}  {:>5}  {:>7.4f}  {:>8.3f}  {:>10}  {:>7}  {:>10}  {:>7}", indent,
      "mean over tasks", width, "", loss, std::exp(loss), "",
      percent(scored_tasks, scored_tasks > 0 ? exact / scored_tasks : 0.0), "",
      percent(classified_tasks, classified_tasks > 0 ? accuracy / classified_tasks : 0.0)));
  return lines;
}

}  // namespace pft

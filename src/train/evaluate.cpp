// Held-out evaluation (contract: train/evaluate.h).
#include "train/evaluate.h"

#include <algorithm>
#include <cmath>

#include "comm/communicator.h"
#include "core/format.h"
#include "data/document_source.h"
#include "train/loss.h"
#include "train/task_source.h"

namespace pft {

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
    if (o.max_batches > 0) examples = std::min(examples, o.max_batches * rows * o.world_size);
    for (int32_t slot = 0; slot < split->num_templates(); ++slot) {
      TemplateLoss t;
      t.template_id = split->template_id(slot);
      std::vector<int64_t> docs;
      const auto run = [&] {
        if (docs.empty()) return;
        tasks.fill_documents(k, *split, docs, batch);
        at::Tensor logits = forward(batch);
        const LossSums s = masked_cross_entropy(logits, batch, 0, /*consume_logits=*/true);
        t.loss_sum += s.loss_sum.item<double>();
        t.tokens += batch.loss_mask.sum().item<double>();
        t.documents += static_cast<int64_t>(docs.size());
        docs.clear();
      };
      for (int64_t ex = o.rank; ex < examples; ex += o.world_size) {
        docs.push_back(split->document(ex, slot));
        if (static_cast<int64_t>(docs.size()) == rows) run();
      }
      run();
      e.templates.push_back(t);
      sums.insert(sums.end(), {t.loss_sum, t.tokens, static_cast<double>(t.documents)});
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
        i += 3;
      }
  }
  for (TaskEval& e : out)
    for (const TemplateLoss& t : e.templates) {
      e.loss_sum += t.loss_sum;
      e.tokens += t.tokens;
      e.documents += t.documents;
    }
  return out;
}

std::vector<std::string> format_eval_table(const std::vector<TaskEval>& evals, int64_t step) {
  std::vector<std::string> lines;
  if (evals.empty()) return lines;
  size_t width = 4;
  for (const TaskEval& e : evals) width = std::max(width, e.task.size());
  lines.push_back(fmt::format("held-out at step {}: {:<{}}  {:>5}  {:>7}  {:>9}  {:>9}  {:>5}", step,
                              "task", width, "docs", "loss", "ppl", "tmpl mean", "worst", "tmpl"));
  const std::string indent(fmt::format("held-out at step {}: ", step).size(), ' ');
  double mean = 0.0;
  for (const TaskEval& e : evals) {
    double tmpl_mean = 0.0;
    int n = 0;
    for (const TemplateLoss& t : e.templates)
      if (t.tokens > 0) {
        tmpl_mean += t.loss();
        ++n;
      }
    tmpl_mean = n > 0 ? tmpl_mean / n : 0.0;
    mean += e.loss();
    lines.push_back(fmt::format("{}{:<{}}  {:>5}  {:>7.4f}  {:>9.3f}  {:>9.4f}  {:>5.4f}  {:>5}",
                                indent, e.task, width, e.documents, e.loss(), std::exp(e.loss()),
                                tmpl_mean, e.worst_template_loss(), e.templates.size()));
  }
  mean /= static_cast<double>(evals.size());
  lines.push_back(fmt::format("{}{:<{}}  {:>5}  {:>7.4f}  {:>9.3f}", indent, "mean over tasks",
                              width, "", mean, std::exp(mean)));
  return lines;
}

}  // namespace pft

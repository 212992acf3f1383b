// Training state <-> checkpoint contents (contract: train/checkpointing.h).
#include "train/checkpointing.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <mpi.h>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <mutex>

#include "ckpt/config_record.h"
#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "ckpt/run_checkpoints.h"
#include "control/schedule.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/mpi_check.h"

namespace pft {

namespace fs = std::filesystem;
using ckpt::Contents;
using ckpt::DType;

namespace {

DType dtype_of(c10::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kChar:
      return DType::kInt8;
    case at::kShort:
      return DType::kInt16;
    case at::kInt:
      return DType::kInt32;
    case at::kLong:
      return DType::kInt64;
    case at::kByte:
      return DType::kUInt8;
    case at::kBool:
      return DType::kBool;
    default:
      break;
  }
  throw RuntimeFailure(
      fmt::format("checkpoint: no checkpoint dtype for torch dtype {}", c10::toString(t)));
}

c10::ScalarType scalar_type_of(DType d) {
  switch (d) {
    case DType::kFloat32:
      return at::kFloat;
    case DType::kFloat64:
      return at::kDouble;
    case DType::kFloat16:
      return at::kHalf;
    case DType::kBFloat16:
      return at::kBFloat16;
    case DType::kInt8:
      return at::kChar;
    case DType::kInt16:
      return at::kShort;
    case DType::kInt32:
      return at::kInt;
    case DType::kInt64:
      return at::kLong;
    case DType::kUInt8:
      return at::kByte;
    case DType::kBool:
      return at::kBool;
    case DType::kString:
      break;
  }
  throw InputError("checkpoint: a text dataset where a tensor was expected");
}

// A host, contiguous version of flat buffer `t`: a copy the Contents owns (`snapshot`, or any
// device buffer), else `t` itself borrowed.
at::Tensor host_buffer(const at::Tensor& t, bool snapshot) {
  if (!t.is_cpu()) return t.to(at::kCPU).contiguous();
  return snapshot ? t.clone() : t;
}

// Adds one dataset per slot of group `g`, slicing `buffer` (a flat host buffer of that group).
void add_slots(Contents& c, const std::string& prefix, const FlatParameters& params, size_t g,
               const at::Tensor& buffer, bool owned, const ckpt::Attrs& attrs = {}) {
  std::shared_ptr<const void> keep;
  if (owned) keep = std::make_shared<at::Tensor>(buffer);
  const auto* base = static_cast<const std::byte*>(buffer.data_ptr());
  const size_t esize = buffer.element_size();
  for (size_t i : params.group_slots(g)) {
    const FlatParameters::Slot& s = params.slots()[i];
    const std::span<const std::byte> bytes(base + static_cast<size_t>(s.offset) * esize,
                                           static_cast<size_t>(s.numel) * esize);
    ckpt::Dataset& d =
        c.add(prefix + "/" + s.name, dtype_of(buffer.scalar_type()), s.shape, bytes, keep);
    d.attrs = attrs;
  }
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string rank_group(int r) { return fmt::format("{}/rank_{}", ckpt::kRng, r); }

void bcast_string(std::string& s, const RankEnv& env) {
  int64_t n = static_cast<int64_t>(s.size());
  PFT_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, 0, env.world));
  s.resize(static_cast<size_t>(n));
  if (n > 0) PFT_MPI_CHECK(MPI_Bcast(s.data(), static_cast<int>(n), MPI_CHAR, 0, env.world));
}

// Copies a checkpoint tensor into `dst` (same dtype and shape), on dst's device.
void copy_into(const ckpt::Dataset& d, at::Tensor dst, const std::string& file) {
  const std::vector<int64_t> shape(dst.sizes().begin(), dst.sizes().end());
  if (d.dtype != dtype_of(dst.scalar_type()) || d.shape != shape)
    throw InputError(
        fmt::format("checkpoint {}: dataset {} is {} {}, the run expects {} {}; the "
                    "checkpoint does not fit this model",
                    file, d.path, ckpt::dtype_name(d.dtype), fmt::join(d.shape, "x"),
                    ckpt::dtype_name(dtype_of(dst.scalar_type())), fmt::join(shape, "x")));
  const at::Tensor src = at::from_blob(const_cast<std::byte*>(d.bytes.data()), d.shape,
                                       at::TensorOptions().dtype(scalar_type_of(d.dtype)));
  at::NoGradGuard no_grad;
  dst.copy_(src);
}

}  // namespace

std::vector<std::vector<uint8_t>> gather_rng_states(const WorldComm& world, bool cuda) {
  // One blob per rank: [8-byte CPU state length][CPU state][CUDA state].
  std::vector<uint8_t> mine;
  const auto append = [&](const at::Generator& gen) {
    at::Generator g = gen;
    at::Tensor state;
    {
      std::lock_guard<std::mutex> lock(g.mutex());
      state = g.get_state();
    }
    const auto* p = state.data_ptr<uint8_t>();
    mine.insert(mine.end(), p, p + state.numel());
    return static_cast<uint64_t>(state.numel());
  };
  mine.resize(8);
  const uint64_t cpu_len = append(at::globalContext().defaultGenerator(at::kCPU));
  std::memcpy(mine.data(), &cpu_len, 8);
  if (cuda) append(at::globalContext().defaultGenerator(at::Device(at::kCUDA)));

  if (world.size <= 1) return {mine};
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(world.size));
  PFT_MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, world.comm));
  std::vector<int> displs(lens.size(), 0);
  int total = 0;
  for (size_t r = 0; r < lens.size(); ++r) {
    displs[r] = total;
    total += lens[r];
  }
  std::vector<uint8_t> all(world.rank == 0 ? static_cast<size_t>(total) : 0);
  PFT_MPI_CHECK(MPI_Gatherv(mine.data(), len, MPI_BYTE, all.data(), lens.data(), displs.data(),
                            MPI_BYTE, 0, world.comm));
  std::vector<std::vector<uint8_t>> out;
  if (world.rank != 0) return out;
  for (size_t r = 0; r < lens.size(); ++r)
    out.emplace_back(all.begin() + displs[r], all.begin() + displs[r] + lens[r]);
  return out;
}

Contents checkpoint_contents(const Config& config, int world_size, const FlatParameters& params,
                             const AdamW& optimizer, LossScaler* scaler,
                             const TrainProgress& progress,
                             const std::vector<std::vector<uint8_t>>& rng_states, bool snapshot) {
  Contents c;
  ckpt::Attrs& meta = c.group(ckpt::kMeta);
  meta[ckpt::kAttrStep] = progress.step;
  meta[ckpt::kAttrTokensSeen] = progress.tokens_seen;
  meta[ckpt::kAttrWorldSize] = static_cast<int64_t>(world_size);
  meta[ckpt::kAttrPftVersion] = std::string(PFT_VERSION);
  meta[ckpt::kAttrGitCommit] = std::string(ckpt::git_commit());
  meta[ckpt::kAttrTimeUnix] = static_cast<int64_t>(std::time(nullptr));
  meta[ckpt::kAttrTimeUtc] = utc_now();
  meta[std::string(ckpt::kMetricAttrPrefix) + "loss"] = progress.loss;
  for (const auto& [name, value] : progress.metrics)
    meta[std::string(ckpt::kMetricAttrPrefix) + name] = value;
  c.add_text(ckpt::kMetaConfig, to_yaml(config));
  c.add_text(ckpt::kMetaConfigFlat, ckpt::flat_to_json(ckpt::flatten_config(config)));
  c.add_text(ckpt::kMetaArchitecture, ckpt::flat_to_json(ckpt::architecture_keys(config)));

  c.group(ckpt::kModel)["parameters"] = params.numel();
  for (size_t g = 0; g < params.num_groups(); ++g) {
    const at::Tensor buf = host_buffer(params.data(g), snapshot);
    add_slots(c, ckpt::kModel, params, g, buf, snapshot || !params.data(g).is_cpu());
  }

  ckpt::Attrs& opt = c.group(ckpt::kOptimizer);
  const AdamWOptions& o = optimizer.options();
  opt["kind"] = std::string("adamw");
  opt["step_count"] = optimizer.step_count();
  opt["beta1"] = o.beta1;
  opt["beta2"] = o.beta2;
  opt["eps"] = o.eps;
  opt["weight_decay"] = o.weight_decay;
  const ckpt::Attrs step_attr{{"step", optimizer.step_count()}};
  for (size_t g = 0; g < optimizer.num_groups(); ++g) {
    const AdamW::GroupState& s = optimizer.state(g);
    const bool owned = snapshot || !s.exp_avg.is_cpu();
    add_slots(c, "/optimizer/exp_avg", params, g, host_buffer(s.exp_avg, snapshot), owned,
              step_attr);
    add_slots(c, "/optimizer/exp_avg_sq", params, g, host_buffer(s.exp_avg_sq, snapshot), owned,
              step_attr);
  }
  ckpt::Attrs& sched = c.group("/optimizer/schedule");
  sched["kind"] = config.train.schedule;
  sched["peak_lr"] = config.train.lr;
  sched["total_steps"] = config.train.steps;
  sched["warmup_steps"] = config.train.warmup_steps;
  sched["min_lr_ratio"] = config.train.min_lr_ratio;
  sched["next_step"] = progress.step;
  if (scaler != nullptr) {
    const float scale = scaler->scale().to(at::kCPU).item<float>();
    const int32_t tracker = scaler->growth_tracker().to(at::kCPU).item<int32_t>();
    c.add_copy("/optimizer/loss_scaler/scale", DType::kFloat32, {},
               std::as_bytes(std::span<const float>(&scale, 1)));
    c.add_copy("/optimizer/loss_scaler/growth_tracker", DType::kInt32, {},
               std::as_bytes(std::span<const int32_t>(&tracker, 1)));
  }

  ckpt::Attrs& trainable = c.group(ckpt::kTrainable);
  trainable["version"] = int64_t{1};
  trainable["method"] = config.train.method;
  trainable["base_model_path"] = config.model.from_pretrained;
  trainable["base_model_hash"] = progress.base_model_hash;

  c.group(ckpt::kRng)["world_size"] = static_cast<int64_t>(rng_states.size());
  for (size_t r = 0; r < rng_states.size(); ++r) {
    const std::vector<uint8_t>& blob = rng_states[r];
    uint64_t cpu_len = 0;
    std::memcpy(&cpu_len, blob.data(), 8);
    const std::string g = rank_group(static_cast<int>(r));
    const auto bytes = std::as_bytes(std::span<const uint8_t>(blob));
    c.add_copy(g + "/cpu", DType::kUInt8, {static_cast<int64_t>(cpu_len)},
               bytes.subspan(8, cpu_len));
    if (blob.size() > 8 + cpu_len)
      c.add_copy(g + "/cuda", DType::kUInt8, {static_cast<int64_t>(blob.size() - 8 - cpu_len)},
                 bytes.subspan(8 + cpu_len));
  }

  ckpt::Attrs& data = c.group(ckpt::kData);
  data["version"] = int64_t{1};
  data["source"] = progress.data_source;
  data["next_step"] = progress.step;
  ckpt::Attrs& ctrl = c.group(ckpt::kController);
  ctrl["version"] = int64_t{1};
  if (progress.loader) {
    boost::json::array names;
    for (const std::string& n : progress.task_names) names.emplace_back(n);
    c.add_text("/data/task_names", boost::json::serialize(names));
    data["loader_step"] = progress.loader->step;
    c.add_vector("/data/next_sample", DType::kInt64, progress.loader->next_sample);
    std::vector<double> weights(progress.mixture_weights.begin(), progress.mixture_weights.end());
    c.add_vector("/controller/mixture_weights", DType::kFloat64, weights);
  }
  if (progress.control) {
    const PlanLog& log = progress.control->log;
    c.add_text("/controller/state", progress.control->json);
    const auto n = static_cast<int64_t>(log.step.size());
    c.group("/controller/plan")["slots"] = log.slots;
    c.add_vector("/controller/plan/step", DType::kInt64, log.step);
    c.add_vector("/controller/plan/phase", DType::kInt32, log.phase);
    c.add_vector("/controller/plan/world_size", DType::kInt32, log.world_size);
    c.add_copy("/controller/plan/slot_task", DType::kInt32, {n, log.slots},
               std::as_bytes(std::span<const int32_t>(log.slot_task)));
    c.add_copy("/controller/plan/slot_documents", DType::kInt32, {n, log.slots},
               std::as_bytes(std::span<const int32_t>(log.slot_docs)));
    c.add_vector("/controller/plan/doc_example", DType::kInt32, log.doc_example);
    c.add_vector("/controller/plan/doc_template", DType::kInt32, log.doc_template);
  }

  c.group(ckpt::kMetrics)["version"] = int64_t{1};
  std::string history;
  for (const std::string& line : progress.metrics_history) history += line + "\n";
  c.add_text("/metrics/history", history);
  return c;
}

TrainProgress restore_checkpoint(const Contents& c, const Config& config, const RankEnv& env,
                                 FlatParameters& params, AdamW& optimizer, LossScaler* scaler,
                                 const std::vector<std::string>& task_names,
                                 std::vector<std::string>* changes) {
  const std::string& file = c.source;
  const auto refuse = [&](const std::string& what) {
    throw InputError(fmt::format("checkpoint {}: {}", file, what));
  };
  const std::vector<ckpt::ConfigChange> diff = ckpt::check_resume_config(
      file, ckpt::flat_from_json(c.at(ckpt::kMetaArchitecture).text(), ckpt::kMetaArchitecture),
      ckpt::flat_from_json(c.at(ckpt::kMetaConfigFlat).text(), ckpt::kMetaConfigFlat), config);
  if (changes != nullptr)
    for (const ckpt::ConfigChange& ch : diff)
      changes->push_back(fmt::format("{}: {} -> {}", ch.key, ch.saved, ch.current));

  // Parameters and optimizer moments, slot by slot, straight into the flat buffers.
  size_t model_tensors = 0;
  for (const FlatParameters::Slot& s : params.slots()) {
    const ckpt::Dataset* d = c.find(std::string(ckpt::kModel) + "/" + s.name);
    if (d == nullptr)
      refuse(
          fmt::format("parameter {} is not in it; the checkpoint does not fit this model", s.name));
    copy_into(*d, s.param.detach(), file);
    ++model_tensors;
    const auto view = [&](at::Tensor& flat) {
      return flat.narrow(0, s.offset, s.numel).view(s.shape);
    };
    AdamW::GroupState& st = optimizer.state(s.group);
    copy_into(c.at("/optimizer/exp_avg/" + s.name), view(st.exp_avg), file);
    copy_into(c.at("/optimizer/exp_avg_sq/" + s.name), view(st.exp_avg_sq), file);
  }
  if (c.under(ckpt::kModel).size() != model_tensors)
    for (const ckpt::Dataset* d : c.under(ckpt::kModel)) {
      const std::string name = d->path.substr(std::string(ckpt::kModel).size() + 1);
      bool found = false;
      for (const FlatParameters::Slot& s : params.slots()) found = found || s.name == name;
      if (!found)
        refuse(fmt::format("it holds parameter {}, which this model does not have", name));
    }
  optimizer.set_step_count(
      ckpt::attr_int(c.group_attrs(ckpt::kOptimizer), "step_count", ckpt::kOptimizer));
  if (scaler != nullptr) {
    if (const ckpt::Dataset* s = c.find("/optimizer/loss_scaler/scale")) {
      copy_into(*s, scaler->scale(), file);
      copy_into(c.at("/optimizer/loss_scaler/growth_tracker"), scaler->growth_tracker(), file);
    } else {
      log::warn(
          "checkpoint {}: no fp16 loss scale saved (the run was not fp16); starting the "
          "scale afresh",
          file);
    }
  }

  // Generator states of this rank, when the checkpoint has them (same or larger world size).
  const std::string g = rank_group(env.world_rank);
  if (const ckpt::Dataset* cpu = c.find(g + "/cpu")) {
    at::Generator gen = at::globalContext().defaultGenerator(at::kCPU);
    const at::Tensor state =
        at::from_blob(const_cast<std::byte*>(cpu->bytes.data()), {cpu->numel()}, at::kByte).clone();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  } else {
    log::warn(
        "checkpoint {}: no generator state for rank {} (saved on {} rank(s)); this rank "
        "keeps its seeded state",
        file, env.world_rank, ckpt::attr_to_string(c.group_attrs(ckpt::kRng).at("world_size")));
  }
  if (env.is_cuda()) {
    if (const ckpt::Dataset* cuda = c.find(g + "/cuda")) {
      at::Generator gen = at::globalContext().defaultGenerator(at::Device(env.device));
      const at::Tensor state =
          at::from_blob(const_cast<std::byte*>(cuda->bytes.data()), {cuda->numel()}, at::kByte)
              .clone();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(state);
    }
  }

  TrainProgress p;
  const ckpt::Attrs& meta = c.group_attrs(ckpt::kMeta);
  p.step = ckpt::attr_int(meta, ckpt::kAttrStep, ckpt::kMeta);
  p.tokens_seen = ckpt::attr_int(meta, ckpt::kAttrTokensSeen, ckpt::kMeta);
  p.loss = ckpt::attr_double(meta, std::string(ckpt::kMetricAttrPrefix) + "loss", ckpt::kMeta);
  if (c.has_group(ckpt::kTrainable)) {
    const ckpt::Attrs& trainable = c.group_attrs(ckpt::kTrainable);
    if (trainable.count("base_model_hash") > 0)
      p.base_model_hash = ckpt::attr_string(trainable, "base_model_hash", ckpt::kTrainable);
  }
  const ckpt::Attrs& data = c.group_attrs(ckpt::kData);
  p.data_source = ckpt::attr_string(data, "source", ckpt::kData);
  if (p.data_source != config.data.source)
    refuse(
        fmt::format("it was trained with data.source `{}`, this run uses `{}`; resume with the "
                    "same data source",
                    p.data_source, config.data.source));
  if (c.find("/data/task_names") != nullptr) {
    p.task_names = saved_task_names(c);
    if (p.task_names != task_names)
      refuse(
          fmt::format("it was trained on tasks [{}], this run has [{}] (data.tasks); resuming "
                      "continues each task's sample stream, so the task list must not change",
                      fmt::join(p.task_names, ", "), fmt::join(task_names, ", ")));
    LoaderState ls;
    ls.step = ckpt::attr_int(data, "loader_step", ckpt::kData);
    const ckpt::Dataset& ns = c.at("/data/next_sample");
    ls.next_sample.resize(static_cast<size_t>(ns.numel()));
    if (ns.dtype != DType::kInt64 || ls.next_sample.size() != task_names.size())
      refuse("/data/next_sample does not hold one int64 per task");
    std::memcpy(ls.next_sample.data(), ns.bytes.data(), ns.bytes.size());
    p.loader = ls;
  }
  if (const ckpt::Dataset* state = c.find("/controller/state")) {
    ControlState control;
    control.json = state->text();
    PlanLog& log = control.log;
    const auto read = [&](const std::string& name, DType dtype, auto& out) {
      const ckpt::Dataset& d = c.at("/controller/plan/" + name);
      using T = typename std::decay_t<decltype(out)>::value_type;
      if (d.dtype != dtype) refuse(fmt::format("/controller/plan/{} is not {}", name, ckpt::dtype_name(dtype)));
      out.resize(static_cast<size_t>(d.numel()));
      std::memcpy(out.data(), d.bytes.data(), out.size() * sizeof(T));
    };
    log.slots = ckpt::attr_int(c.group_attrs("/controller/plan"), "slots", "/controller/plan");
    read("step", DType::kInt64, log.step);
    read("phase", DType::kInt32, log.phase);
    read("world_size", DType::kInt32, log.world_size);
    read("slot_task", DType::kInt32, log.slot_task);
    read("slot_documents", DType::kInt32, log.slot_docs);
    read("doc_example", DType::kInt32, log.doc_example);
    read("doc_template", DType::kInt32, log.doc_template);
    int64_t docs = 0;
    for (int32_t x : log.slot_docs) docs += x;
    const size_t steps = log.step.size();
    if (log.phase.size() != steps || log.world_size.size() != steps ||
        log.slot_task.size() != steps * static_cast<size_t>(log.slots) ||
        log.slot_docs.size() != log.slot_task.size() ||
        log.doc_example.size() != static_cast<size_t>(docs) ||
        log.doc_template.size() != log.doc_example.size())
      refuse("the plan log under /controller/plan has datasets of inconsistent lengths");
    p.control = std::move(control);
  }
  if (const ckpt::Dataset* h = c.find("/metrics/history")) {
    const std::string text = h->text();
    size_t start = 0;
    for (size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
      if (nl > start) p.metrics_history.push_back(text.substr(start, nl - start));
      start = nl + 1;
    }
  }
  return p;
}

std::optional<Contents> load_resume_checkpoint(const Config& config, const RankEnv& env,
                                               fs::path* file) {
  const std::string& resume = config.train.resume;
  if (resume == "none") return std::nullopt;
  ckpt::ReadOptions ro;
  ro.file_locking = config.checkpoint.file_locking;
  std::optional<Contents> contents;
  std::string chosen;
  agree(env, [&] {
    if (!env.is_root()) return;
    if (resume == "auto") {
      const fs::path dir = fs::path(config.run.dir) / "checkpoints";
      std::error_code ec;
      if (fs::is_directory(dir, ec))
        for (const auto& e : fs::directory_iterator(dir, ec)) {
          const std::string name = e.path().filename().string();
          if (name.size() > 1 && name[0] == '.' && name.find(".tmp-") != std::string::npos)
            log::warn("resume: ignoring '{}', left by an interrupted save", e.path().string());
        }
      const ckpt::Pick pick = ckpt::pick_newest(dir, [&](const fs::path& p) -> std::string {
        try {
          contents = ckpt::read_checkpoint(p, ro);
          return "";
        } catch (const InputError& e) {
          std::string reason = e.what();
          const std::string prefix = fmt::format("checkpoint {}: ", p.string());
          return reason.rfind(prefix, 0) == 0 ? reason.substr(prefix.size()) : reason;
        }
      });
      for (const std::string& s : pick.skipped)
        log::warn("resume: skipping invalid checkpoint {}", s);
      if (pick.path) {
        chosen = pick.path->string();
      } else {
        contents.reset();
        log::info("resume: auto: no valid checkpoint in {}; starting from step 0", dir.string());
      }
      return;
    }
    std::error_code ec;
    if (!fs::is_regular_file(resume, ec))
      config::fail(config.source_of("train.resume"), "train.resume",
                   fmt::format("no checkpoint file '{}'; use `auto` to pick the newest valid "
                               "checkpoint of run.dir, or `none`",
                               resume));
    try {
      contents = ckpt::read_checkpoint(resume, ro);
    } catch (const InputError& e) {
      config::fail(
          config.source_of("train.resume"), "train.resume",
          fmt::format("{}; refusing to resume from it (pick another file, or `auto`)", e.what()));
    }
    chosen = resume;
  });
  bcast_string(chosen, env);
  if (chosen.empty()) return std::nullopt;
  agree(env, [&] {
    if (!env.is_root()) contents = ckpt::read_checkpoint(chosen, ro);
  });
  if (file != nullptr) *file = chosen;
  return contents;
}

Checkpointer::Checkpointer(const Config& config, const RankEnv& env, FlatParameters& params,
                           AdamW& optimizer, LossScaler* scaler, MetricsSink& metrics)
    : config_(config),
      env_(env),
      params_(params),
      optimizer_(optimizer),
      scaler_(scaler),
      metrics_(metrics) {
  if (!env.is_root()) return;
  const CheckpointConfig& cc = config.checkpoint;
  ckpt::SaverOptions o;
  o.dir = fs::path(config.run.dir) / "checkpoints";
  o.async = cc.async;
  o.write.compression = ckpt::parse_compression(cc.compression);
  o.write.file_locking = cc.file_locking;
  o.retention = retention_policy(cc);
  saver_ = std::make_unique<ckpt::CheckpointSaver>(std::move(o));
}

Checkpointer::~Checkpointer() = default;

std::optional<TrainProgress> Checkpointer::resume(const std::vector<std::string>& task_names) {
  fs::path file;
  const std::optional<Contents> contents = load_resume_checkpoint(config_, env_, &file);
  if (!contents) return std::nullopt;
  TrainProgress progress;
  std::vector<std::string> changes;
  agree(env_, [&] {
    progress = restore_checkpoint(*contents, config_, env_, params_, optimizer_, scaler_,
                                  task_names, &changes);
  });
  if (saver_) saver_->protect(file);
  log::info("resume: from {} at step {} ({} tokens seen, saved on {} rank(s))", file.string(),
            progress.step, progress.tokens_seen,
            ckpt::attr_to_string(contents->group_attrs(ckpt::kMeta).at(ckpt::kAttrWorldSize)));
  for (const std::string& c : changes) log::info("resume: config changed: {}", c);
  if (env_.is_root()) metrics_.restore_history(progress.metrics_history);
  last_saved_step_ = progress.step;
  return progress;
}

void Checkpointer::report(const std::vector<ckpt::SaveReport>& reports) {
  for (const ckpt::SaveReport& r : reports) {
    metrics_.checkpoint(r);
    log::info("checkpoint: step {} -> {} ({:.1f} MB in {:.2f} s, training stalled {:.3f} s{})",
              r.step, r.path.string(), static_cast<double>(r.stats.data_bytes) / 1e6,
              r.stats.seconds, r.stall_s, r.async ? ", async" : "");
  }
}

void Checkpointer::after_step(TrainProgress progress, bool save, bool last) {
  const bool due = save && progress.step != last_saved_step_;
  if (due) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<std::vector<uint8_t>> rng =
        gather_rng_states(WorldComm{env_.world, env_.world_size, env_.world_rank}, env_.is_cuda());
    agree(env_, [&] {
      if (!saver_) return;
      progress.metrics_history = metrics_.history();
      const bool snapshot = config_.checkpoint.async;
      Contents contents = checkpoint_contents(config_, env_.world_size, params_, optimizer_,
                                              scaler_, progress, rng, snapshot);
      const double snapshot_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      saver_->save(progress.step, std::move(contents), snapshot_s);
    });
    last_saved_step_ = progress.step;
  }
  if (last) {
    std::vector<ckpt::SaveReport> reports;
    agree(env_, [&] {
      if (saver_) reports = saver_->wait();
    });
    report(reports);
  } else if (saver_) {
    report(saver_->poll());
  }
}

ckpt::RetentionPolicy retention_policy(const CheckpointConfig& cc) {
  ckpt::RetentionPolicy p;
  p.keep_last = cc.keep_last;
  p.keep_best = cc.keep_best;
  p.best_metric = cc.best_metric;
  const size_t dot = cc.best_metric.rfind('.');
  p.higher_is_better = higher_is_better(
      dot == std::string::npos ? cc.best_metric : cc.best_metric.substr(dot + 1), cc.best_mode);
  p.file_locking = cc.file_locking;
  return p;
}

std::vector<std::string> saved_task_names(const ckpt::Contents& contents) {
  std::vector<std::string> out;
  if (const ckpt::Dataset* names = contents.find("/data/task_names")) {
    const boost::json::value list = boost::json::parse(names->text());
    for (const boost::json::value& n : list.as_array()) out.emplace_back(n.as_string());
  }
  return out;
}

std::vector<size_t> init_adapters_from(const std::filesystem::path& file, const std::string& base_model_hash,
                        const std::vector<std::pair<std::string, at::Tensor>>& named,
                        const std::map<std::string, int64_t>& block_rows,
                        const std::vector<std::string>& task_names, const std::string& what) {
  return init_adapters_from(ckpt::read_checkpoint(file), file, base_model_hash, named, block_rows,
                            task_names, what);
}

std::vector<size_t> init_adapters_from(const ckpt::Contents& c, const std::filesystem::path& file,
                                       const std::string& base_model_hash,
                                       const std::vector<std::pair<std::string, at::Tensor>>& named,
                                       const std::map<std::string, int64_t>& block_rows,
                                       const std::vector<std::string>& task_names,
                                       const std::string& what) {
  const std::string where = fmt::format("{}: checkpoint {}", what, file.string());
  std::string saved_hash;
  if (c.has_group(ckpt::kTrainable)) {
    const ckpt::Attrs& t = c.group_attrs(ckpt::kTrainable);
    if (t.count("base_model_hash") > 0)
      saved_hash = ckpt::attr_string(t, "base_model_hash", ckpt::kTrainable);
  }
  if (saved_hash.empty())
    throw InputError(fmt::format("{} holds no adapters (it was trained with train.method full); "
                                 "start from an adapter checkpoint",
                                 where));
  if (saved_hash != base_model_hash)
    throw InputError(fmt::format("{} was trained on another base model ({}; this run's base is "
                                 "{}); adapters only fit the base they were trained on",
                                 where, saved_hash, base_model_hash));
  const std::vector<std::string> saved_tasks = saved_task_names(c);
  at::NoGradGuard no_grad;
  int64_t copied = 0;
  std::vector<size_t> loaded;
  for (size_t k = 0; k < task_names.size(); ++k)
    if (std::find(saved_tasks.begin(), saved_tasks.end(), task_names[k]) != saved_tasks.end())
      loaded.push_back(k);
  for (const auto& [name, dst] : named) {
    const ckpt::Dataset* d = c.find(std::string(ckpt::kModel) + "/" + name);
    if (d == nullptr) continue;  // a method the checkpoint did not train keeps its fresh init
    const auto rows = block_rows.find(name);
    if (rows == block_rows.end() || saved_tasks == task_names) {
      copy_into(*d, dst, file.string());
      ++copied;
      continue;
    }
    // A task table of another task list: copy the blocks of the tasks both runs have, by name.
    const int64_t n = rows->second;
    if (d->shape.size() != 2 || d->shape[1] != dst.size(1) ||
        d->shape[0] != n * static_cast<int64_t>(saved_tasks.size()))
      throw InputError(fmt::format("{}: {} is {}, which does not fit this run's {} ({} rows per "
                                   "task)",
                                   where, d->path, fmt::join(d->shape, "x"),
                                   fmt::join(dst.sizes(), "x"), n));
    const at::Tensor src = at::from_blob(const_cast<std::byte*>(d->bytes.data()), d->shape,
                                         at::TensorOptions().dtype(scalar_type_of(d->dtype)));
    for (size_t k = 0; k < task_names.size(); ++k) {
      const auto it = std::find(saved_tasks.begin(), saved_tasks.end(), task_names[k]);
      if (it == saved_tasks.end()) continue;
      const int64_t from = (it - saved_tasks.begin()) * n;
      dst.narrow(0, static_cast<int64_t>(k) * n, n).copy_(src.narrow(0, from, n));
    }
    ++copied;
  }
  if (copied == 0)
    throw InputError(fmt::format("{} holds none of this run's adapter tensors (it was trained with "
                                 "another train.method)",
                                 where));
  return loaded;
}

std::string module_hash(torch::nn::Module& module) {
  ckpt::Checksummer sum;
  for (const auto& item : module.named_parameters()) {
    const at::Tensor t = item.value().detach().to(at::kCPU).contiguous();
    sum.update({static_cast<const std::byte*>(t.data_ptr()),
                static_cast<size_t>(t.numel()) * t.element_size()});
  }
  return ckpt::checksum_text(sum.digest());
}

std::string parameter_hash(const FlatParameters& params) {
  ckpt::Checksummer sum;
  for (size_t g = 0; g < params.num_groups(); ++g) {
    const at::Tensor buf =
        params.data(g).is_cpu() ? params.data(g) : params.data(g).to(at::kCPU).contiguous();
    const auto* base = static_cast<const std::byte*>(buf.data_ptr());
    for (size_t i : params.group_slots(g)) {
      const FlatParameters::Slot& s = params.slots()[i];
      sum.update({base + static_cast<size_t>(s.offset) * buf.element_size(),
                  static_cast<size_t>(s.numel) * buf.element_size()});
    }
  }
  return ckpt::checksum_text(sum.digest());
}

}  // namespace pft

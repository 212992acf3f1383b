// Training state <-> checkpoint contents (contract: train/checkpoint_state.h).
#include "train/checkpoint_state.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>

#include "ckpt/config_record.h"
#include "ckpt/format.h"
#include "comm/communicator.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "train/checkpoint_tensors.h"

namespace pft {

using ckpt::Contents;
using ckpt::DType;

namespace {

// /controller's version: 2 since the plan log there is a window (the steps since the previous
// save, control/plan_log.h); 1 held every step.
constexpr int64_t kControllerVersion = 2;

// A host, contiguous version of flat buffer `t`: a copy the Contents owns (`snapshot`, or any
// device buffer), else `t` itself borrowed.
at::Tensor host_buffer(const at::Tensor& t, bool snapshot) {
  if (!t.is_cpu()) return t.to(at::kCPU).contiguous();
  return snapshot ? t.clone() : t;
}

// Adds one dataset per slot of group `g`, slicing `buffer` (a flat host buffer of that group).
void add_slots(Contents& c, std::string_view prefix, const FlatParameters& params, size_t g,
               const at::Tensor& buffer, bool owned, const ckpt::Attrs& attrs = {}) {
  std::shared_ptr<const void> keep;
  if (owned) keep = std::make_shared<at::Tensor>(buffer);
  const auto* base = static_cast<const std::byte*>(buffer.data_ptr());
  const size_t esize = buffer.element_size();
  for (size_t i : params.group_slots(g)) {
    const FlatParameters::Slot& s = params.slots()[i];
    const std::span<const std::byte> bytes(base + static_cast<size_t>(s.offset) * esize,
                                           static_cast<size_t>(s.numel) * esize);
    ckpt::Dataset& d = c.add(ckpt::child_path(prefix, s.name),
                             checkpoint_dtype(buffer.scalar_type()), s.shape, bytes, keep);
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

}  // namespace

std::vector<std::vector<uint8_t>> gather_rng_states(Communicator* comm, bool cuda) {
  // One blob per rank: [8-byte CPU state length][CPU state][CUDA state].
  std::string mine;
  const auto append = [&](const at::Generator& gen) {
    at::Generator g = gen;
    at::Tensor state;
    {
      std::lock_guard<std::mutex> lock(g.mutex());
      state = g.get_state();
    }
    const auto* p = reinterpret_cast<const char*>(state.data_ptr<uint8_t>());
    mine.append(p, static_cast<size_t>(state.numel()));
    return static_cast<uint64_t>(state.numel());
  };
  mine.resize(8);
  const uint64_t cpu_len = append(at::globalContext().defaultGenerator(at::kCPU));
  std::memcpy(mine.data(), &cpu_len, 8);
  if (cuda) append(at::globalContext().defaultGenerator(at::Device(at::kCUDA)));

  const auto blob = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  if (comm == nullptr || comm->size() <= 1) return {blob(mine)};
  std::vector<std::vector<uint8_t>> out;
  for (const std::string& s : comm->gather_bytes_to_root(mine, 0)) out.push_back(blob(s));
  return out;
}

namespace {

// The moments of a streamed ZeRO-1 save (Note [streamed ZeRO-1 save]): the scratch file's bytes,
// laid out as GatheredMoments::offset says, except, when rank 0's own shard was kept live, the
// elements [lo, hi) of each group, read from the optimizer's state. A read lies within one
// group's exp_avg or exp_avg_sq (one dataset's bytes).
class MomentsSource final : public ckpt::ByteSource {
 public:
  MomentsSource(const GatheredMoments& gathered, const AdamW& optimizer,
                const FlatParameters& params)
      : spill_(gathered.spill), offset_(gathered.offset) {
    for (size_t g = 0; g < optimizer.num_groups(); ++g) {
      const AdamW::GroupState& s = optimizer.state(g);
      Group grp;
      grp.numel = params.data(g).numel();
      grp.esize = s.exp_avg.element_size();
      if (gathered.own_shard_live) {
        grp.lo = s.lo;
        grp.hi = s.hi;
        grp.live[0] = static_cast<const std::byte*>(s.exp_avg.data_ptr());
        grp.live[1] = static_cast<const std::byte*>(s.exp_avg_sq.data_ptr());
      }
      groups_.push_back(grp);
    }
  }

  void read(uint64_t offset, std::span<std::byte> out) const override {
    const size_t g = static_cast<size_t>(
        std::upper_bound(offset_.begin(), offset_.end(), offset) - offset_.begin() - 1);
    const Group& grp = groups_.at(g);
    const uint64_t region = static_cast<uint64_t>(grp.numel) * grp.esize;
    const uint64_t rel = offset - offset_[g];
    const int moment = rel >= region ? 1 : 0;
    // Elements [e, e + n) of the moment's buffer; the live part is [lo, hi).
    const int64_t e = static_cast<int64_t>((rel - moment * region) / grp.esize);
    const int64_t n = static_cast<int64_t>(out.size() / grp.esize);
    PFT_ASSERT(e + n <= grp.numel, "a moments read crosses a buffer's end");
    const int64_t live_lo = std::clamp(grp.lo, e, e + n), live_hi = std::clamp(grp.hi, e, e + n);
    const auto bytes = [&](int64_t elements) { return static_cast<size_t>(elements) * grp.esize; };
    if (live_lo > e) spill_->read(offset, out.first(bytes(live_lo - e)));
    if (live_hi > live_lo)
      std::memcpy(out.data() + bytes(live_lo - e), grp.live[moment] + bytes(live_lo - grp.lo),
                  bytes(live_hi - live_lo));
    if (e + n > live_hi)
      spill_->read(offset + bytes(live_hi - e), out.subspan(bytes(live_hi - e)));
  }

 private:
  struct Group {
    int64_t numel = 0, lo = 0, hi = 0;  // lo == hi: nothing live
    size_t esize = 4;
    const std::byte* live[2] = {nullptr, nullptr};
  };
  std::shared_ptr<ckpt::SpillFile> spill_;
  std::vector<uint64_t> offset_;
  std::vector<Group> groups_;
};

}  // namespace

GatheredMoments gather_moments_for_save(const AdamW& optimizer, const FlatParameters& params,
                                        bool root, const std::filesystem::path& dir,
                                        const std::string& name, bool borrow_own_shard) {
  GatheredMoments out;
  if (!optimizer.sharded()) return out;
  if (root) {
    out.own_shard_live = borrow_own_shard;
    for (size_t g = 0; g < optimizer.num_groups(); ++g)
      out.own_shard_live = out.own_shard_live && optimizer.state(g).exp_avg.is_cpu() &&
                           optimizer.state(g).exp_avg.is_contiguous() &&
                           optimizer.state(g).exp_avg_sq.is_contiguous();
    uint64_t bytes = 0;
    for (size_t g = 0; g < optimizer.num_groups(); ++g) {
      out.offset.push_back(bytes);
      bytes += 2 * static_cast<uint64_t>(params.data(g).numel()) *
               optimizer.state(g).exp_avg.element_size();
    }
    for (size_t g = 0; g < optimizer.num_groups(); ++g) {
      const AdamW::GroupState& own = optimizer.state(g);
      const int64_t spilled = params.data(g).numel() - (out.own_shard_live ? own.hi - own.lo : 0);
      out.spill_bytes += 2 * spilled * own.exp_avg.element_size();
    }
    try {
      std::error_code ec;  // the first save creates the directory; create() reports a failure
      std::filesystem::create_directories(dir, ec);
      out.spill = ckpt::SpillFile::create(dir, name);
    } catch (const std::exception& e) {
      out.error = e.what();
    }
  }
  int64_t staged = 0;
  AdamW::MomentSink sink;
  if (root)
    sink = [&](size_t g, int moment, int64_t offset, const at::Tensor& piece) {
      if (out.error) return;  // keep receiving: the other ranks are in the gather too
      const AdamW::GroupState& own = optimizer.state(g);
      if (out.own_shard_live && offset >= own.lo && offset < own.hi) return;  // read live
      try {
        at::Tensor host = piece;
        if (!host.is_cpu()) {
          host = piece.to(at::kCPU);
          staged = std::max<int64_t>(staged, static_cast<int64_t>(host.nbytes()));
        }
        const uint64_t esize = host.element_size();
        const uint64_t at = out.offset[g] +
                            static_cast<uint64_t>(moment) * params.data(g).numel() * esize +
                            static_cast<uint64_t>(offset) * esize;
        out.spill->write(at, {static_cast<const std::byte*>(host.data_ptr()), host.nbytes()});
        out.spilled_bytes += static_cast<int64_t>(host.nbytes());
      } catch (const std::exception& e) {
        out.error = e.what();
      }
    };
  optimizer.gather_moments_to_root(sink);
  if (root) out.held_bytes = optimizer.gather_buffer_bytes() + staged;
  return out;
}

Contents checkpoint_contents(const Config& config, int world_size, const FlatParameters& params,
                             const AdamW& optimizer, LossScaler* scaler,
                             const TrainProgress& progress,
                             const std::vector<std::vector<uint8_t>>& rng_states, bool snapshot,
                             const GatheredMoments* gathered) {
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

  c.group(ckpt::kModel)[ckpt::kAttrParameters] = params.numel();
  for (size_t g = 0; g < params.num_groups(); ++g) {
    const at::Tensor buf = host_buffer(params.data(g), snapshot);
    add_slots(c, ckpt::kModel, params, g, buf, snapshot || !params.data(g).is_cpu());
  }

  ckpt::Attrs& opt = c.group(ckpt::kOptimizer);
  const AdamWOptions& o = optimizer.options();
  opt[ckpt::kAttrKind] = std::string("adamw");
  opt[ckpt::kAttrStepCount] = optimizer.step_count();
  opt["beta1"] = o.beta1;
  opt["beta2"] = o.beta2;
  opt["eps"] = o.eps;
  opt["weight_decay"] = o.weight_decay;
  const ckpt::Attrs step_attr{{ckpt::kAttrStep, optimizer.step_count()}};
  // ZeRO-1: the moments gathered from every rank's shard, streamed from rank 0's scratch file
  // (Note [streamed ZeRO-1 save]); the datasets are those of a replicated run's (Note [ZeRO-1] in
  // train/optimizer.h).
  PFT_ASSERT(!optimizer.sharded() ||
                 (gathered != nullptr && gathered->spill && !gathered->error &&
                  gathered->offset.size() == optimizer.num_groups()),
             "checkpoint_contents: a sharded optimizer's moments must be gathered first");
  std::shared_ptr<const ckpt::ByteSource> moments;
  if (optimizer.sharded())
    moments = std::make_shared<MomentsSource>(*gathered, optimizer, params);
  for (size_t g = 0; g < optimizer.num_groups(); ++g) {
    if (optimizer.sharded()) {
      const DType dtype = checkpoint_dtype(optimizer.state(g).exp_avg.scalar_type());
      const uint64_t esize = optimizer.state(g).exp_avg.element_size();
      const uint64_t numel = static_cast<uint64_t>(params.data(g).numel());
      for (int moment = 0; moment < 2; ++moment)
        for (size_t i : params.group_slots(g)) {
          const FlatParameters::Slot& s = params.slots()[i];
          const uint64_t at = gathered->offset[g] + (moment * numel + s.offset) * esize;
          c.add_streamed(ckpt::child_path(moment == 0 ? ckpt::kOptimizerExpAvg
                                                      : ckpt::kOptimizerExpAvgSq,
                                          s.name),
                         dtype, s.shape, moments, at)
              .attrs = step_attr;
        }
      continue;
    }
    const AdamW::GroupState& s = optimizer.state(g);
    const bool owned = snapshot || !s.exp_avg.is_cpu();
    add_slots(c, ckpt::kOptimizerExpAvg, params, g, host_buffer(s.exp_avg, snapshot), owned,
              step_attr);
    add_slots(c, ckpt::kOptimizerExpAvgSq, params, g, host_buffer(s.exp_avg_sq, snapshot), owned,
              step_attr);
  }
  ckpt::Attrs& sched = c.group(ckpt::kOptimizerSchedule);
  sched[ckpt::kAttrKind] = config.train.schedule;
  sched["peak_lr"] = config.train.lr;
  sched["total_steps"] = config.train.steps;
  sched["warmup_steps"] = config.train.warmup_steps;
  sched["min_lr_ratio"] = config.train.min_lr_ratio;
  sched[ckpt::kAttrNextStep] = progress.step;
  if (scaler != nullptr) {
    const float scale = scaler->scale().to(at::kCPU).item<float>();
    const int32_t tracker = scaler->growth_tracker().to(at::kCPU).item<int32_t>();
    c.add_copy(ckpt::kLossScalerScale, DType::kFloat32, {},
               std::as_bytes(std::span<const float>(&scale, 1)));
    c.add_copy(ckpt::kLossScalerGrowthTracker, DType::kInt32, {},
               std::as_bytes(std::span<const int32_t>(&tracker, 1)));
  }

  ckpt::Attrs& trainable = c.group(ckpt::kTrainable);
  trainable[ckpt::kAttrVersion] = int64_t{1};
  trainable[ckpt::kAttrMethod] = std::string(config::config_text(config.train.method));
  trainable[ckpt::kAttrBaseModelPath] = config.model.from_pretrained;
  trainable[ckpt::kAttrBaseModelHash] = progress.base_model_hash;

  c.group(ckpt::kRng)[ckpt::kAttrWorldSize] = static_cast<int64_t>(rng_states.size());
  for (size_t r = 0; r < rng_states.size(); ++r) {
    const std::vector<uint8_t>& blob = rng_states[r];
    uint64_t cpu_len = 0;
    std::memcpy(&cpu_len, blob.data(), 8);
    const std::string g = ckpt::rng_rank_group(static_cast<int>(r));
    const auto bytes = std::as_bytes(std::span<const uint8_t>(blob));
    c.add_copy(ckpt::child_path(g, ckpt::kRngCpu), DType::kUInt8, {static_cast<int64_t>(cpu_len)},
               bytes.subspan(8, cpu_len));
    if (blob.size() > 8 + cpu_len)
      c.add_copy(ckpt::child_path(g, ckpt::kRngCuda), DType::kUInt8,
                 {static_cast<int64_t>(blob.size() - 8 - cpu_len)}, bytes.subspan(8 + cpu_len));
  }

  ckpt::Attrs& data = c.group(ckpt::kData);
  data[ckpt::kAttrVersion] = int64_t{1};
  data[ckpt::kAttrSource] = progress.data_source;
  data[ckpt::kAttrNextStep] = progress.step;
  ckpt::Attrs& ctrl = c.group(ckpt::kController);
  ctrl[ckpt::kAttrVersion] = kControllerVersion;
  if (progress.loader) {
    boost::json::array names;
    for (const std::string& n : progress.task_names) names.emplace_back(n);
    c.add_text(ckpt::kDataTaskNames, boost::json::serialize(names));
    data[ckpt::kAttrLoaderStep] = progress.loader->step;
    c.add_vector(ckpt::kDataNextSample, DType::kInt64, progress.loader->next_sample);
    std::vector<double> weights(progress.mixture_weights.begin(), progress.mixture_weights.end());
    c.add_vector(ckpt::kControllerMixtureWeights, DType::kFloat64, weights);
  }
  if (progress.control) {
    const PlanLog& log = progress.control->log;
    const auto plan = [](const char* name) { return ckpt::child_path(ckpt::kControllerPlan, name); };
    c.add_text(ckpt::kControllerState, progress.control->json);
    const auto n = static_cast<int64_t>(log.step.size());
    ckpt::Attrs& plan_attrs = c.group(ckpt::kControllerPlan);
    plan_attrs[ckpt::kAttrSlots] = log.slots;
    plan_attrs[ckpt::kAttrFirstStep] = log.first_step;
    c.add_vector(plan(ckpt::kPlanStep), DType::kInt64, log.step);
    c.add_vector(plan(ckpt::kPlanPhase), DType::kInt32, log.phase);
    c.add_vector(plan(ckpt::kPlanWorldSize), DType::kInt32, log.world_size);
    c.add_copy(plan(ckpt::kPlanSlotTask), DType::kInt32, {n, log.slots},
               std::as_bytes(std::span<const int32_t>(log.slot_task)));
    c.add_copy(plan(ckpt::kPlanSlotDocuments), DType::kInt32, {n, log.slots},
               std::as_bytes(std::span<const int32_t>(log.slot_docs)));
    c.add_vector(plan(ckpt::kPlanDocExample), DType::kInt32, log.doc_example);
    c.add_vector(plan(ckpt::kPlanDocTemplate), DType::kInt32, log.doc_template);
  }

  c.group(ckpt::kMetrics)[ckpt::kAttrVersion] = int64_t{1};
  std::string history;
  for (const std::string& line : progress.metrics_history) history += line + "\n";
  c.add_text(ckpt::kMetricsHistory, history);
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
    const ckpt::Dataset* d = c.find(ckpt::child_path(ckpt::kModel, s.name));
    if (d == nullptr)
      refuse(
          fmt::format("parameter {} is not in it; the checkpoint does not fit this model", s.name));
    copy_dataset_into(*d, s.param.detach(), file);
    ++model_tensors;
    // The moments cover elements [lo, hi) of the group buffer: all of it, or under ZeRO-1 this
    // rank's shard, which holds a part of this slot or none of it (train/optimizer.h).
    AdamW::GroupState& st = optimizer.state(s.group);
    const int64_t from = std::max(s.offset, st.lo);
    const int64_t to = std::min(s.offset + s.numel, st.hi);
    const ckpt::Dataset& m = c.at(ckpt::child_path(ckpt::kOptimizerExpAvg, s.name));
    const ckpt::Dataset& v = c.at(ckpt::child_path(ckpt::kOptimizerExpAvgSq, s.name));
    if (from >= to) {  // still check that the datasets fit
      copy_dataset_range_into(m, s.shape, 0, st.exp_avg.narrow(0, 0, 0), file);
      copy_dataset_range_into(v, s.shape, 0, st.exp_avg_sq.narrow(0, 0, 0), file);
      continue;
    }
    copy_dataset_range_into(m, s.shape, from - s.offset,
                            st.exp_avg.narrow(0, from - st.lo, to - from), file);
    copy_dataset_range_into(v, s.shape, from - s.offset,
                            st.exp_avg_sq.narrow(0, from - st.lo, to - from), file);
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
      ckpt::attr_int(c.group_attrs(ckpt::kOptimizer), ckpt::kAttrStepCount, ckpt::kOptimizer));
  if (scaler != nullptr) {
    if (const ckpt::Dataset* s = c.find(ckpt::kLossScalerScale)) {
      copy_dataset_into(*s, scaler->scale(), file);
      copy_dataset_into(c.at(ckpt::kLossScalerGrowthTracker), scaler->growth_tracker(), file);
    } else {
      log::warn(
          "checkpoint {}: no fp16 loss scale saved (the run was not fp16); starting the "
          "scale afresh",
          file);
    }
  }

  // Generator states of this rank, when the checkpoint has them (same or larger world size).
  const std::string g = ckpt::rng_rank_group(env.world_rank);
  if (const ckpt::Dataset* cpu = c.find(ckpt::child_path(g, ckpt::kRngCpu))) {
    at::Generator gen = at::globalContext().defaultGenerator(at::kCPU);
    const at::Tensor state =
        at::from_blob(const_cast<std::byte*>(cpu->bytes.data()), {cpu->numel()}, at::kByte).clone();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  } else {
    log::warn(
        "checkpoint {}: no generator state for rank {} (saved on {} rank(s)); this rank "
        "keeps its seeded state",
        file, env.world_rank, ckpt::attr_to_string(c.group_attrs(ckpt::kRng).at(ckpt::kAttrWorldSize)));
  }
  if (env.is_cuda()) {
    if (const ckpt::Dataset* cuda = c.find(ckpt::child_path(g, ckpt::kRngCuda))) {
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
    if (trainable.count(ckpt::kAttrBaseModelHash) > 0)
      p.base_model_hash = ckpt::attr_string(trainable, ckpt::kAttrBaseModelHash, ckpt::kTrainable);
  }
  const ckpt::Attrs& data = c.group_attrs(ckpt::kData);
  p.data_source = ckpt::attr_string(data, ckpt::kAttrSource, ckpt::kData);
  const std::string source = config::config_text(config.data.source);
  if (p.data_source != source)
    refuse(
        fmt::format("it was trained with data.source `{}`, this run uses `{}`; resume with the "
                    "same data source",
                    p.data_source, source));
  if (c.find(ckpt::kDataTaskNames) != nullptr) {
    p.task_names = saved_task_names(c);
    if (p.task_names != task_names)
      refuse(
          fmt::format("it was trained on tasks [{}], this run has [{}] (data.tasks); resuming "
                      "continues each task's sample stream, so the task list must not change",
                      fmt::join(p.task_names, ", "), fmt::join(task_names, ", ")));
    LoaderState ls;
    ls.step = ckpt::attr_int(data, ckpt::kAttrLoaderStep, ckpt::kData);
    const ckpt::Dataset& ns = c.at(ckpt::kDataNextSample);
    ls.next_sample.resize(static_cast<size_t>(ns.numel()));
    if (ns.dtype != DType::kInt64 || ls.next_sample.size() != task_names.size())
      refuse(fmt::format("{} does not hold one int64 per task", ckpt::kDataNextSample));
    std::memcpy(ls.next_sample.data(), ns.bytes.data(), ns.bytes.size());
    p.loader = ls;
  }
  if (const ckpt::Dataset* state = c.find(ckpt::kControllerState)) {
    const int64_t version =
        ckpt::attr_int(c.group_attrs(ckpt::kController), ckpt::kAttrVersion, ckpt::kController);
    if (version < 1 || version > kControllerVersion)
      refuse(fmt::format("its {} has version {}; this pft reads versions 1..{} (use a newer pft)",
                         ckpt::kController, version, kControllerVersion));
    ControlState control;
    control.json = state->text();
    PlanLog& log = control.log;
    const auto read = [&](const char* name, DType dtype, auto& out) {
      const ckpt::Dataset& d = c.at(ckpt::child_path(ckpt::kControllerPlan, name));
      using T = typename std::decay_t<decltype(out)>::value_type;
      if (d.dtype != dtype)
        refuse(fmt::format("{} is not {}", d.path, ckpt::dtype_name(dtype)));
      out.resize(static_cast<size_t>(d.numel()));
      // An empty log (no document recorded yet) has no bytes: memcpy of a null pointer is
      // undefined even for 0 bytes (UBSan, the ASan build of the ZeRO and bf16 CLI tests).
      if (!out.empty()) std::memcpy(out.data(), d.bytes.data(), out.size() * sizeof(T));
    };
    log.slots = ckpt::attr_int(c.group_attrs(ckpt::kControllerPlan), ckpt::kAttrSlots,
                               ckpt::kControllerPlan);
    read(ckpt::kPlanStep, DType::kInt64, log.step);
    read(ckpt::kPlanPhase, DType::kInt32, log.phase);
    read(ckpt::kPlanWorldSize, DType::kInt32, log.world_size);
    read(ckpt::kPlanSlotTask, DType::kInt32, log.slot_task);
    read(ckpt::kPlanSlotDocuments, DType::kInt32, log.slot_docs);
    read(ckpt::kPlanDocExample, DType::kInt32, log.doc_example);
    read(ckpt::kPlanDocTemplate, DType::kInt32, log.doc_template);
    // Version 1 (before the plan log moved to plan.jsonl) saved every step since step 0 (or
    // since a change of the slots per step) and no first_step: the window is all of it.
    const ckpt::Attrs& plan_attrs = c.group_attrs(ckpt::kControllerPlan);
    log.first_step = plan_attrs.count(ckpt::kAttrFirstStep) > 0
                         ? ckpt::attr_int(plan_attrs, ckpt::kAttrFirstStep, ckpt::kControllerPlan)
                         : (log.step.empty() ? p.step : log.step.front());
    try {
      (void)to_records(log);
    } catch (const std::invalid_argument& e) {
      refuse(fmt::format("the plan log under {}: {}", ckpt::kControllerPlan, e.what()));
    }
    if (!log.step.empty() && (log.step.front() != log.first_step || log.step.back() >= p.step))
      refuse(fmt::format("the plan log under {} holds steps {}..{}, not a window that starts at "
                         "its first_step {} and ends before the checkpoint's step {}",
                         ckpt::kControllerPlan, log.step.front(), log.step.back(),
                         log.first_step, p.step));
    p.control = std::move(control);
  }
  if (const ckpt::Dataset* h = c.find(ckpt::kMetricsHistory)) {
    const std::string text = h->text();
    size_t start = 0;
    for (size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
      if (nl > start) p.metrics_history.push_back(text.substr(start, nl - start));
      start = nl + 1;
    }
  }
  return p;
}

std::vector<std::string> saved_task_names(const ckpt::Contents& contents) {
  std::vector<std::string> out;
  if (const ckpt::Dataset* names = contents.find(ckpt::kDataTaskNames)) {
    const boost::json::value list = boost::json::parse(names->text());
    for (const boost::json::value& n : list.as_array()) out.emplace_back(n.as_string());
  }
  return out;
}

}  // namespace pft

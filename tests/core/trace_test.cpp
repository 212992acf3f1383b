// core/trace.h: the track encoding of Note [trace tracks] and when spans and samples are kept.
#include "core/trace.h"

#include <gtest/gtest.h>

#include <set>

namespace {

using pft::trace::Lane;

// A bucket's track gives back its lane however many buckets there are, never another lane's tid,
// and sorts under its lane (after it, before the next lane).
TEST(Trace, TracksOfManyBucketsKeepTheirLane) {
  using pft::trace::kLanes;
  using pft::trace::tid_of;
  using pft::trace::track_sort_index;
  EXPECT_EQ(tid_of(Lane::kComm, 0), static_cast<int>(Lane::kComm));
  std::set<int> tids;
  for (int lane = 0; lane < kLanes; ++lane) tids.insert(tid_of(static_cast<Lane>(lane), 0));
  for (int track = 1; track <= 5000; ++track) {
    const int tid = tid_of(Lane::kComm, track);
    EXPECT_EQ(tid % kLanes, static_cast<int>(Lane::kComm)) << track;
    EXPECT_TRUE(tids.insert(tid).second) << "track " << track << " reuses tid " << tid;
    EXPECT_GT(track_sort_index(Lane::kComm, track), track_sort_index(Lane::kComm, track - 1));
    EXPECT_LT(track_sort_index(Lane::kComm, track), track_sort_index(Lane::kOptimizer, 0));
  }
}

// Off: record() keeps nothing; a span begun while on is kept although tracing stopped before it
// ended (a background checkpoint write); record_unchecked always keeps; samples only when on.
TEST(Trace, SpansBegunWhileOnAreKept) {
  pft::trace::take_events();
  pft::trace::take_samples();
  pft::trace::set_enabled(false);
  pft::trace::record(Lane::kEval, "off", 1, 2);
  pft::trace::sample("off", 1.0);
  { pft::trace::Span never(Lane::kEval, "never"); }
  EXPECT_TRUE(pft::trace::take_events().empty());
  EXPECT_TRUE(pft::trace::take_samples().empty());

  pft::trace::set_enabled(true);
  pft::trace::sample("tokens/s per rank", 42.0);
  {
    pft::trace::Span outlives(Lane::kCheckpointWrite, "write checkpoint", 7);
    pft::trace::set_enabled(false);
  }
  pft::trace::record_unchecked(Lane::kComm, "bucket 150", 10, 20, -1, 151);
  const std::vector<pft::trace::Event> events = pft::trace::take_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].name, "write checkpoint");
  EXPECT_EQ(events[0].step, 7);
  EXPECT_EQ(events[1].track, 151);
  const std::vector<pft::trace::Sample> samples = pft::trace::take_samples();
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].value, 42.0);
}

}  // namespace

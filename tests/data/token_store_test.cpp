// The HDF5 checker and handles (core/hdf5.h), the prepared token store (data/token_store.h):
// round trip, chunk cache, staleness; preparation (data/store_prepare.h): content hash keys,
// rebuild on any input change, equality with direct rendering; the loader over real stores.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "core/format.h"
#include "core/hdf5.h"
#include "data/loader.h"
#include "data/store_prepare.h"
#include "data/token_store.h"
#include "data_test_util.h"

namespace pft {
namespace {

namespace fs = std::filesystem;
using testing_data::TempDir;

// ---- core/hdf5 ------------------------------------------------------------------------------

TEST(Hdf5, CheckerCapturesTheErrorStackAndPrintsNothing) {
  ::testing::internal::CaptureStderr();
  try {
    PFT_H5_CHECK(H5Fopen("/nonexistent/dir/x.h5", H5F_ACC_RDONLY, H5P_DEFAULT));
    ADD_FAILURE() << "no Hdf5Error";
  } catch (const h5::Hdf5Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("H5Fopen"), std::string::npos) << msg;
    EXPECT_NE(msg.find("token_store_test.cpp:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("on rank"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unable to open file"), std::string::npos) << msg;
    EXPECT_FALSE(e.stack().empty());
  }
  // Another thread: HDF5's automatic printing is per thread and must be off there too.
  std::thread([] {
    EXPECT_THROW(PFT_H5_CHECK_AT(H5Fopen("/nonexistent/y.h5", H5F_ACC_RDONLY, H5P_DEFAULT), "y"),
                 h5::Hdf5Error);
  }).join();
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

TEST(Hdf5, HandlesAttributesAndDatasets) {
  TempDir dir;
  const fs::path p = dir.path() / "a.h5";
  {
    h5::File f = h5::File::create(p);
    f.write_attribute("name", std::string("pft"));
    f.write_attribute("empty", std::string());
    f.write_attribute("n", int64_t{-42});
    f.write_attribute("x", 2.5);
    const h5::Group g = f.create_group("g");
    h5::Dataset d = h5::Dataset::create_1d<int32_t>(g, "v", 0, 4);
    const std::vector<int32_t> a = {1, 2, 3, 4, 5, 6}, b = {7, 8, 9};
    d.append_1d<int32_t>(a);
    d.append_1d<int32_t>(b);
    EXPECT_EQ(d.chunk_size_1d(), 4u);
    f.close();
  }
  const h5::File f = h5::File::open(p);
  EXPECT_EQ(f.read_string_attribute("name"), "pft");
  EXPECT_EQ(f.read_string_attribute("empty"), "");
  EXPECT_EQ(f.read_int_attribute("n"), -42);
  EXPECT_EQ(f.read_double_attribute("x"), 2.5);
  EXPECT_FALSE(f.has_attribute("nope"));
  EXPECT_TRUE(f.has("g"));
  EXPECT_FALSE(f.has("h"));
  const h5::Dataset d = f.open_group("g").open_dataset("v");
  EXPECT_EQ(d.read_all_1d<int32_t>(), (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  std::vector<int32_t> mid(3);
  d.read_1d<int32_t>(4, mid);
  EXPECT_EQ(mid, (std::vector<int32_t>{5, 6, 7}));
  // Reading past the end fails through the checker, naming the object and range.
  std::vector<int32_t> past(5);
  try {
    d.read_1d<int32_t>(7, past);
    ADD_FAILURE() << "no Hdf5Error";
  } catch (const h5::Hdf5Error& e) {
    EXPECT_NE(std::string(e.what()).find("/g/v [7, 12)"), std::string::npos) << e.what();
  }
}

// Note [attribute messages] (core/hdf5_attr_check.cpp): an attribute message whose sizes do not
// fit in it is refused, naming the file, before HDF5 1.10 decodes it (and reads past its buffer).
std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

void expect_refused(const std::function<void()>& f, const std::string& file,
                    const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "no error for " << what;
  } catch (const h5::Hdf5Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("corrupt HDF5 object header"), std::string::npos) << msg;
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

TEST(Hdf5, AttributeMessagesThatDoNotFitAreRefusedBeforeHdf5DecodesThem) {
  TempDir dir;
  const fs::path good = dir.path() / "good.h5";
  {
    h5::File f = h5::File::create(good);
    f.write_attribute("count", int64_t{7});
    f.write_attribute("label", std::string("pft"));
    f.create_group("g").write_attribute("x", 0.5);
    f.close();
  }
  const std::string bytes = read_bytes(good);
  // A version 1 attribute message: version, reserved, name/datatype/dataspace sizes (u16 each),
  // then the name padded to 8 bytes and the datatype (size field at its byte 4).
  const size_t name = bytes.find(std::string("count\0", 6));
  ASSERT_NE(name, std::string::npos);
  ASSERT_EQ(bytes[name - 8], 1) << "not a version 1 attribute message";
  ASSERT_EQ(bytes[name - 6], 6) << "name length";

  // The datatype claims 40-byte elements: the value fits in the message (HDF5's own check) but
  // not in what is left of it after the name, datatype and dataspace (HDF5 would read past it).
  const fs::path wide = dir.path() / "wide.h5";
  std::string b = bytes;
  b[name + 8 + 4] = 40;
  write_bytes(wide, b);
  {
    const h5::File f = h5::File::open(wide);
    expect_refused([&] { (void)f.read_int_attribute("count"); }, "wide.h5", "attribute value");
    expect_refused([&] { (void)f.has_attribute("label"); }, "wide.h5", "attribute value");
    // Another object's attributes are in its own header: still readable.
    EXPECT_EQ(f.open_group("g").read_double_attribute("x"), 0.5);
  }
  // A name without its NUL at the stored length (HDF5 would copy up to the next NUL).
  const fs::path unterminated = dir.path() / "unterminated.h5";
  b = bytes;
  b[name + 5] = 'X';
  write_bytes(unterminated, b);
  expect_refused([&] { (void)h5::File::open(unterminated).has_attribute("count"); },
                 "unterminated.h5", "attribute name");
  // A datatype class pft never writes (compound).
  const fs::path compound = dir.path() / "compound.h5";
  b = bytes;
  b[name + 8] = static_cast<char>((b[name + 8] & 0xF0) | 6);
  write_bytes(compound, b);
  expect_refused([&] { (void)h5::File::open(compound).read_int_attribute("count"); },
                 "compound.h5", "datatype class 6");
  // The untouched file reads back.
  const h5::File f = h5::File::open(good);
  EXPECT_EQ(f.read_int_attribute("count"), 7);
  EXPECT_EQ(f.read_string_attribute("label"), "pft");
}

// Dense attribute storage (what checkpoints' /meta uses past 8 attributes with version 2 object
// headers): every attribute message in the fractal heap, found through the name index B-tree, is
// checked; 2,000 attributes make a B-tree of depth 1 and a heap with indirect blocks.
TEST(Hdf5, DenseAttributesAreCheckedInTheirHeap) {
  TempDir dir;
  const fs::path good = dir.path() / "dense.h5";
  constexpr int kAttrs = 2000;
  {
    const h5::PropList fapl = h5::PropList::create(H5P_FILE_ACCESS);
    PFT_H5_CHECK(H5Pset_libver_bounds(fapl.id(), H5F_LIBVER_V18, H5F_LIBVER_V18));
    h5::File f(PFT_H5_CHECK(H5Fcreate(good.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id())));
    const h5::Group g = f.create_group("meta");
    for (int i = 0; i < kAttrs; ++i)
      g.write_attribute(fmt::format("metric.{:04}", i), static_cast<int64_t>(i));
    g.write_attribute("text", std::string(3000, 'x'));
    f.close();
  }
  {
    const h5::File f = h5::File::open(good);
    const h5::Group g = f.open_group("meta");
    EXPECT_EQ(g.read_int_attribute("metric.0000"), 0);
    EXPECT_EQ(g.read_int_attribute("metric.1999"), 1999);
    EXPECT_EQ(g.read_string_attribute("text"), std::string(3000, 'x'));
    EXPECT_FALSE(g.has_attribute("nope"));
  }
  const std::string bytes = read_bytes(good);
  // A version 3 attribute message (no padding): the name, then the datatype.
  const size_t name = bytes.find(std::string("metric.1234\0", 12));
  ASSERT_NE(name, std::string::npos);
  ASSERT_EQ(bytes[name - 9], 3) << "not a version 3 attribute message";
  std::string b = bytes;
  b[name + 12 + 4] = 16;  // 16-byte elements: past the end of the 8-byte value
  const fs::path wide = dir.path() / "wide.h5";
  write_bytes(wide, b);
  expect_refused([&] { (void)h5::File::open(wide).open_group("meta").has_attribute("a"); },
                 "wide.h5:/meta", "attribute value");
  // The name index's record count one short: HDF5 would size its table of attributes from it
  // and write past the table while iterating.
  const size_t bthd = bytes.find("BTHD");
  ASSERT_NE(bthd, std::string::npos);
  const size_t total_at = bthd + 4 + 1 + 1 + 4 + 2 + 2 + 1 + 1 + 8 + 2;  // after the root's count
  b = bytes;
  uint64_t total = 0;
  std::memcpy(&total, b.data() + total_at, 8);
  ASSERT_EQ(total, uint64_t{kAttrs + 1});
  --total;
  std::memcpy(b.data() + total_at, &total, 8);
  const fs::path short_count = dir.path() / "short_count.h5";
  write_bytes(short_count, b);
  expect_refused([&] { (void)h5::File::open(short_count).open_group("meta").has_attribute("a"); },
                 "short_count.h5:/meta", "holds 2000 records but holds 2001");
}

// Fuzz finding 7's reproducers (regression seeds of the token_store target): HDF5 1.10 read 8 bytes past a heap buffer
// decoding their attribute messages. Now a clean error (the sanitizer build checks the "clean").
// The first predates token store format 2: it is refused for its version before its damaged
// header is reached; the second reaches the check.
TEST(TokenStore, FuzzFinding7ReproducersAreRefused) {
  for (const auto& [name, reason] :
       {std::pair<const char*, const char*>{"regress-hdf5-attr-decode-overread",
                                            "token store format version 1"},
        {"regress-hdf5-attr-exists-overread", "corrupt HDF5 object header"}}) {
    TempDir dir;
    const fs::path p = dir.path() / "store.h5";
    fs::copy_file(testing_data::kRepo / "tests/fuzz/corpus/token_store" / name, p);
    try {
      (void)TokenStore::open(p, std::nullopt);
      ADD_FAILURE() << name << " opened";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << name << ": " << e.what();
    }
  }
}

// ---- token store ----------------------------------------------------------------------------

StoreInfo info(uint64_t salt = 1) {
  return StoreInfo{"demo", "byte (test)", ContentHash{salt, 2}, 128, kTokenStoreVersion};
}

struct Docs {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<uint8_t>> masks;
};

Docs random_docs(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  Docs d;
  for (int64_t i = 0; i < n; ++i) {
    const size_t len = 1 + g() % 100;
    std::vector<int32_t> t(len);
    std::vector<uint8_t> m(len);
    for (size_t j = 0; j < len; ++j) {
      t[j] = static_cast<int32_t>(g() % 50000);
      m[j] = static_cast<uint8_t>(g() % 2);
    }
    d.tokens.push_back(std::move(t));
    d.masks.push_back(std::move(m));
  }
  return d;
}

TEST(TokenStore, RoundTripThroughASmallChunkCache) {
  TempDir dir;
  const fs::path p = dir.path() / "cache" / "demo.h5";
  const Docs train = random_docs(3 * 70, 1), test = random_docs(2 * 9, 2);
  {
    TokenStoreWriter w(p, info(), /*chunk_tokens=*/64);
    w.begin_split(Split::kTrain, {0, 2, 3}, 70);
    for (size_t i = 0; i < train.tokens.size(); ++i) w.append(train.tokens[i], train.masks[i]);
    w.end_split();
    w.begin_split(Split::kTest, {0, 1}, 9);
    for (size_t i = 0; i < test.tokens.size(); ++i) w.append(test.tokens[i], test.masks[i]);
    w.end_split();
    EXPECT_FALSE(fs::exists(p));  // only a temporary file until commit
    w.commit();
  }
  ASSERT_TRUE(fs::exists(p));
  EXPECT_EQ(std::distance(fs::directory_iterator(p.parent_path()), fs::directory_iterator()), 1);

  auto store = TokenStore::open(p, ContentHash{1, 2}, StoreReadOptions{2});
  EXPECT_EQ(store->info().task, "demo");
  EXPECT_EQ(store->info().tokenizer, "byte (test)");
  EXPECT_EQ(store->info().seq_len, 128);
  EXPECT_TRUE(store->has_split(Split::kTrain));
  EXPECT_FALSE(store->has_split(Split::kValidation));
  EXPECT_THROW(store->split(Split::kValidation), InputError);
  StoreSplit& s = store->split(Split::kTrain);
  EXPECT_EQ(s.num_examples(), 70);
  EXPECT_EQ(s.num_templates(), 3);
  EXPECT_EQ(s.template_id(1), 2);
  EXPECT_EQ(s.num_documents(), 210);
  std::vector<int32_t> tok;
  std::vector<uint8_t> mask;
  int64_t total = 0;
  for (int64_t d = 0; d < s.num_documents(); ++d) {  // sequential: each chunk read once
    ASSERT_EQ(s.length(d), static_cast<int64_t>(train.tokens[static_cast<size_t>(d)].size()));
    s.read(d, tok, mask);
    ASSERT_EQ(tok, train.tokens[static_cast<size_t>(d)]) << "doc " << d;
    ASSERT_EQ(mask, train.masks[static_cast<size_t>(d)]) << "doc " << d;
    total += s.length(d);
  }
  EXPECT_EQ(s.num_tokens(), total);
  EXPECT_EQ(s.chunk_reads(), (total + 63) / 64);
  // Random access through the 2-entry LRU: correct, and memory stays at two chunks.
  std::mt19937_64 g(3);
  for (int i = 0; i < 300; ++i) {
    const auto d = static_cast<int64_t>(g() % 210);
    s.read(d, tok, mask);
    ASSERT_EQ(tok, train.tokens[static_cast<size_t>(d)]);
  }
  EXPECT_LE(s.resident_bytes(), static_cast<int64_t>(211 * 8 + 3 * 4 + 2 * 64 * 5 + 64));
  StoreSplit& t = store->split(Split::kTest);
  t.read(17, tok, mask);
  EXPECT_EQ(tok, test.tokens[17]);
}

TEST(TokenStore, StaleAndBrokenStoresAreRefused) {
  TempDir dir;
  const fs::path p = dir.path() / "demo.h5";
  {
    TokenStoreWriter w(p, info(7));
    w.begin_split(Split::kTrain, {0}, 1);
    const std::vector<int32_t> t = {1, 2, 3};
    const std::vector<uint8_t> m = {0, 1, 1};
    w.append(t, m);
    w.end_split();
    w.commit();
  }
  EXPECT_NO_THROW(TokenStore::open(p, ContentHash{7, 2}));
  EXPECT_NO_THROW(TokenStore::open(p, std::nullopt));
  EXPECT_THROW(TokenStore::open(p, ContentHash{8, 2}), StaleStore);
  testing_data::expect_input_error(
      [&] { TokenStore::open(dir.path() / "missing.h5", std::nullopt); },
      {"missing.h5", "not a token store"});
  const fs::path junk = dir.file("junk.h5", "this is not HDF5");
  testing_data::expect_input_error([&] { TokenStore::open(junk, std::nullopt); },
                                   {"junk.h5", "pft data prepare"});
}

// Overwrites element `index` of /train/<name> in place, as a flipped bit on disk would change it
// (HDF5 itself sees nothing wrong: only the store's own checksums can tell).
// The file's whole-file seal is then recomputed, as a crafted file would carry one, so the
// store's own checksums are what must notice (Note [file seal], core/hdf5.cpp).
void reseal(const fs::path& p) {
  {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    const std::string zeros(h5::kSealBytes, '\0');
    f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  h5::seal_file(p);
}

template <class T>
void corrupt_element(const fs::path& p, const std::string& name, hsize_t index, T value) {
  {
    const h5::File f = h5::File::open(p, /*read_write=*/true);
    const std::vector<T> v = {value};
    f.open_group("train").open_dataset(name).write_1d<T>(index, std::span<const T>(v));
  }
  reseal(p);
}

// XORs one byte of the file at `offset`, as damage on disk would (HDF5 not involved).
void flip_byte(const fs::path& p, std::streamoff offset) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(offset);
  f.write(&c, 1);
}

// A store of one train split (2 tasks x 50 examples) of `train`, chunked small (64 tokens).
void write_train_store(const fs::path& p, const Docs& train) {
  TokenStoreWriter w(p, info(9), /*chunk_tokens=*/64);
  w.begin_split(Split::kTrain, {0, 1}, 50);
  for (size_t i = 0; i < train.tokens.size(); ++i) w.append(train.tokens[i], train.masks[i]);
  w.end_split();
  w.commit();
}

// Issue 18 (HDF5 1.10 crashes on damaged metadata): a store carries a whole-file seal, checked
// before HDF5 opens the file; a flipped byte anywhere -- HDF5's superblock and object headers
// near the start, the data, the metadata at the end -- is refused naming the file.
TEST(TokenStore, SealRefusesAFlippedByteBeforeHdf5Opens) {
  TempDir dir;
  const Docs train = random_docs(2 * 50, 3);
  const auto write = [&](const fs::path& p) { write_train_store(p, train); };
  const fs::path good = dir.path() / "good.h5";
  write(good);
  EXPECT_TRUE(h5::check_seal(good).sealed);
  const auto size = static_cast<std::streamoff>(fs::file_size(good));
  for (const std::streamoff off : {std::streamoff{30}, std::streamoff{4096}, std::streamoff{4200},
                                   std::streamoff{6000}, size / 2, size - 300, size - 1}) {
    SCOPED_TRACE(off);
    const fs::path p = dir.path() / "flipped.h5";
    fs::copy_file(good, p, fs::copy_options::overwrite_existing);
    flip_byte(p, off);
    testing_data::expect_input_error([&] { TokenStore::open(p, std::nullopt); },
                                     {p.string(), "damaged", "pft data prepare"});
  }
}

// Issue 18 (fault matrix, flip_store): a store whose tokens were flipped on disk used to be read
// as if nothing happened. Every dataset carries a checksum: open() checks the small ones it reads
// in full, verify() the rest, and each names the dataset.
TEST(TokenStore, EveryDatasetsChecksumCatchesAChangedElement) {
  TempDir dir;
  const Docs train = random_docs(2 * 50, 3);
  const auto write = [&](const fs::path& p) { write_train_store(p, train); };
  const fs::path good = dir.path() / "good.h5";
  write(good);
  EXPECT_NO_THROW(TokenStore::open(good, std::nullopt)->verify());

  struct Case {
    std::string dataset;
    std::function<void(const fs::path&)> corrupt;
    bool found_by_open;
  };
  const std::vector<Case> cases = {
      {"tokens", [&](const fs::path& p) { corrupt_element<int32_t>(p, "tokens", 300, 77777); }, false},
      {"loss_mask", [&](const fs::path& p) { corrupt_element<uint8_t>(p, "loss_mask", 5, 2); }, false},
      {"template_ids", [&](const fs::path& p) { corrupt_element<int32_t>(p, "template_ids", 7, 1 - (7 % 2)); }, false},
      {"example_ids", [&](const fs::path& p) { corrupt_element<int64_t>(p, "example_ids", 7, 0); }, false},
      {"templates", [&](const fs::path& p) { corrupt_element<int32_t>(p, "templates", 1, 4); }, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dataset);
    const fs::path p = dir.path() / (c.dataset + ".h5");
    write(p);
    c.corrupt(p);
    const auto check = [&] { TokenStore::open(p, std::nullopt)->verify(); };
    testing_data::expect_input_error(check, {p.string() + ":/train/" + c.dataset,
                                             "checksum mismatch", "pft data prepare"});
    if (!c.found_by_open) {
      EXPECT_NO_THROW(TokenStore::open(p, std::nullopt));
    }
  }
}

TEST(TokenStore, UncommittedWriterLeavesNothing) {
  TempDir dir;
  {
    TokenStoreWriter w(dir.path() / "x.h5", info());
    w.begin_split(Split::kTrain, {0}, 5);
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// Note [temporary store files]: a writer holds a lock on its temporary file; the clean-up removes
// the files nobody holds (a writer that died) and never one a live writer holds.
TEST(TokenStore, CleanUpRemovesOnlyTheTemporaryFilesOfGoneWriters) {
  TempDir dir;
  const fs::path dead = dir.file("t-0.h5.tmp-999999-0", "left by a killed writer");
  const fs::path store = dir.file("t-1.h5", "a finished store");
  {
    TokenStoreWriter live(dir.path() / "t-2.h5", info());  // writing: its file is locked
    live.begin_split(Split::kTrain, {0}, 1);
    fs::path live_temp;
    for (const auto& e : fs::directory_iterator(dir.path()))
      if (e.path().filename().string().rfind("t-2.h5.tmp-", 0) == 0) live_temp = e.path();
    ASSERT_FALSE(live_temp.empty());
    const std::vector<std::string> removed = remove_abandoned_temporaries(dir.path());
    EXPECT_EQ(removed, std::vector<std::string>{dead.filename().string()});
    EXPECT_FALSE(fs::exists(dead));
    EXPECT_TRUE(fs::exists(live_temp)) << "the file of a live writer was removed";
    EXPECT_TRUE(fs::exists(store));
    const std::vector<int32_t> tokens{1, 2};
    const std::vector<uint8_t> mask{0, 1};
    live.append(tokens, mask);
    live.end_split();
    live.commit();  // the writer still owns its file
  }
  EXPECT_TRUE(fs::exists(dir.path() / "t-2.h5"));
  EXPECT_TRUE(remove_abandoned_temporaries(dir.path()).empty());
  EXPECT_TRUE(remove_abandoned_temporaries(dir.path() / "missing").empty());
}

// ---- preparation ----------------------------------------------------------------------------

const std::string kTinyTask = R"(name: tiny
fields: [a, b, answer]
source:
  train: train.jsonl
  validation: validation.jsonl
templates:
  - id: plain
    input: "{a} + {b} ="
    output: " {answer}"
  - id: shots
    input: "Q: {a} plus {b}?\nA:"
    output: " {answer}"
    few_shot: {k: FEWSHOT}
  - id: held
    held_out: true
    input: "sum {a} {b}"
    output: " {answer}"
)";

std::string records(int n, int salt) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += fmt::format(R"({{"a": "{}", "b": "{}", "answer": "{}"}})"
                     "\n",
                     i, salt, i + salt);
  return s;
}

Config tiny_config(const TempDir& dir, const std::vector<std::string>& overrides = {}) {
  std::vector<std::string> o = {"data.cache_dir=" + (dir.path() / "cache").string()};
  o.insert(o.end(), overrides.begin(), overrides.end());
  return parse_config(fmt::format(R"(
data: {{source: tasks, tokenizer: byte, seq_len: 64, tasks: [{}]}}
train: {{steps: 10, global_batch_size: 4, micro_batch_size: 2, lr: 1.0e-3}}
)",
                                  (dir.path() / "tiny.yaml").string()),
                      (dir.path() / "run.yaml").string(), o);
}

void write_tiny(const TempDir& dir, int few_shot_k = 0, int salt = 5) {
  std::string task = kTinyTask;
  task.replace(task.find("FEWSHOT"), 7, std::to_string(few_shot_k));
  dir.file("tiny.yaml", task);
  dir.file("train.jsonl", records(40, salt));
  dir.file("validation.jsonl", records(7, salt + 1));
}

TEST(Prepare, BuildsOnceThenFindsItCached) {
  TempDir dir;
  write_tiny(dir);
  const std::vector<PreparedStore> first = prepare_token_stores(tiny_config(dir), {2, false});
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(first[0].built);
  EXPECT_EQ(first[0].examples[0], 40);
  EXPECT_EQ(first[0].documents[0], 80);  // two training templates (one held out)
  EXPECT_EQ(first[0].documents[1], 21);  // validation: all three
  EXPECT_EQ(first[0].documents[2], 0);
  EXPECT_EQ(first[0].path, dir.path() / "cache" / ("tiny-" + first[0].hash.hex() + ".h5"));
  const std::vector<PreparedStore> again = prepare_token_stores(tiny_config(dir), {2, false});
  EXPECT_FALSE(again[0].built);
  EXPECT_EQ(again[0].path, first[0].path);
  EXPECT_EQ(again[0].tokens, first[0].tokens);
  // --force rebuilds the same store.
  EXPECT_TRUE(prepare_token_stores(tiny_config(dir), {2, true})[0].built);
  // Formatting the task file (a comment) changes nothing that is rendered: same key.
  dir.file("tiny.yaml",
           "# a comment\n" + std::string(kTinyTask).replace(kTinyTask.find("FEWSHOT"), 7, "0"));
  EXPECT_EQ(prepare_token_stores(tiny_config(dir), {2, false})[0].hash, first[0].hash);
}

// A cached store that no longer matches its checksums is rebuilt, not trained on (issue 18).
TEST(Prepare, CorruptCachedStoreIsRebuilt) {
  TempDir dir;
  write_tiny(dir);
  const PreparedStore first = prepare_token_stores(tiny_config(dir), {1, false})[0];
  ASSERT_TRUE(first.built);
  corrupt_element<int32_t>(first.path, "tokens", 3, 1234);
  const PreparedStore again = prepare_token_stores(tiny_config(dir), {1, false})[0];
  EXPECT_TRUE(again.built);
  EXPECT_EQ(again.path, first.path);
  EXPECT_EQ(again.tokens, first.tokens);
  EXPECT_NO_THROW(TokenStore::open(again.path, again.hash)->verify());
  EXPECT_FALSE(prepare_token_stores(tiny_config(dir), {1, false})[0].built);
}

// The same for damage HDF5 would trip over: one flipped byte in the superblock's neighbourhood.
TEST(Prepare, DamagedSealedStoreIsRebuilt) {
  TempDir dir;
  write_tiny(dir);
  const PreparedStore first = prepare_token_stores(tiny_config(dir), {1, false})[0];
  ASSERT_TRUE(first.built);
  flip_byte(first.path, 4500);
  ASSERT_NE(h5::check_seal(first.path).damage, "");
  const PreparedStore again = prepare_token_stores(tiny_config(dir), {1, false})[0];
  EXPECT_TRUE(again.built);
  EXPECT_EQ(again.tokens, first.tokens);
  EXPECT_TRUE(h5::check_seal(again.path).sealed);
}

TEST(Prepare, AnyInputChangeGivesANewStore) {
  TempDir dir;
  write_tiny(dir);
  const ContentHash base = prepare_token_stores(tiny_config(dir), {1, false})[0].hash;
  const auto hash_with = [&](const std::vector<std::string>& o) {
    const PreparedStore p = prepare_token_stores(tiny_config(dir, o), {1, false})[0];
    EXPECT_TRUE(p.built);
    return p.hash;
  };
  EXPECT_NE(hash_with({"data.seq_len=48"}), base);
  EXPECT_NE(hash_with({"data.train_on_prompt=true"}), base);
  // No template draws demonstrations: the seed does not matter.
  EXPECT_EQ(prepare_token_stores(tiny_config(dir, {"run.seed=99"}), {1, false})[0].hash, base);
  // One byte of one data file.
  dir.file("validation.jsonl", records(7, 7));
  const ContentHash data_changed = hash_with({});
  EXPECT_NE(data_changed, base);
  // A template (few-shot k): and now the seed matters.
  write_tiny(dir, 2);
  const ContentHash few = hash_with({});
  EXPECT_NE(few, base);
  EXPECT_NE(hash_with({"run.seed=99"}), few);
  // A corrupt store under the right name is rebuilt, not read.
  const PreparedStore p = prepare_token_stores(tiny_config(dir), {1, false})[0];
  EXPECT_FALSE(p.built);
  std::ofstream(p.path, std::ios::binary | std::ios::trunc) << "garbage";
  EXPECT_TRUE(prepare_token_stores(tiny_config(dir), {1, false})[0].built);
  EXPECT_NO_THROW(TokenStore::open(p.path, p.hash));
}

TEST(Prepare, StoreHoldsExactlyWhatRenderingGives) {
  TempDir dir;
  write_tiny(dir, 2);
  const Config config = tiny_config(dir);
  const PreparedStore p = prepare_token_stores(config, {2, false})[0];
  auto store = TokenStore::open(p.path, p.hash);
  const TaskDataset data(load_task(dir.path() / "tiny.yaml"), 0, data_options(config));
  const auto tok = load_tokenizer("byte");
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  for (const Split s : {Split::kTrain, Split::kValidation}) {
    StoreSplit& sp = store->split(s);
    const std::vector<int32_t> templates = data.templates_for(s);
    ASSERT_EQ(sp.num_templates(), static_cast<int32_t>(templates.size()));
    for (int64_t e = 0; e < data.size(s); ++e) {
      for (int32_t slot = 0; slot < sp.num_templates(); ++slot) {
        EXPECT_EQ(sp.template_id(slot), templates[static_cast<size_t>(slot)]);
        const RenderedExample ex = data.render(s, e, templates[static_cast<size_t>(slot)], *tok);
        sp.read(sp.document(e, slot), tokens, mask);
        ASSERT_EQ(tokens, ex.tokens) << split_name(s) << " example " << e << " slot " << slot;
        ASSERT_EQ(mask, ex.loss_mask);
      }
    }
  }
}

TEST(Prepare, BundledCollectionFeedsTheLoader) {
  TempDir dir;
  std::string tasks;
  for (const char* t :
       {"add", "reverse", "sort_digits", "max_digit", "uppercase", "sentiment", "tech_qa"})
    tasks += fmt::format(
        "{}{}", tasks.empty() ? "" : ", ",
        (testing_data::kRepo / "datasets" / "tasks" / (std::string(t) + ".yaml")).string());
  const Config config = parse_config(
      fmt::format(
          "data: {{source: tasks, tokenizer: byte, seq_len: 256, tasks: [{}], cache_dir: "
          "{}}}\ntrain: {{steps: 10, global_batch_size: 16, micro_batch_size: 4, lr: 1.0e-3}}\n",
          tasks, (dir.path() / "cache").string()),
      "bundled.yaml");
  const std::vector<PreparedStore> stores = prepare_token_stores(config, {0, false});
  ASSERT_EQ(stores.size(), 7u);
  std::vector<std::unique_ptr<TokenStore>> open;
  std::vector<LoaderTask> lt;
  for (const PreparedStore& p : stores) {
    EXPECT_TRUE(p.built);
    open.push_back(TokenStore::open(p.path, p.hash));
    lt.push_back(LoaderTask{p.task, &open.back()->split(Split::kTrain)});
  }
  LoaderOptions o;
  o.seed = 1234;
  o.seq_len = 256;
  o.micro_batch_size = 4;
  o.global_batch_size = 16;
  o.pad_id = 257;
  TaskLoader loader(lt, o);
  PackedRows rows;
  std::vector<int32_t> tok;
  std::vector<uint8_t> mask;
  for (int step = 0; step < 20; ++step) {
    loader.plan_next_step();
    for (int64_t m = 0; m < loader.micro_batches_per_rank(); ++m) {
      loader.fill(m, rows);
      EXPECT_GT(rows.target_tokens, 0);
      // The first document of each row is the store's document, shifted.
      for (int64_t r = 0; r < rows.rows; ++r) {
        const DocRef& d = rows.docs[static_cast<size_t>(r)].at(0);
        StoreSplit& sp = open[static_cast<size_t>(d.task)]->split(Split::kTrain);
        int32_t slot = 0;
        while (sp.template_id(slot) != d.template_id) ++slot;
        sp.read(sp.document(d.example, slot), tok, mask);
        for (size_t j = 0; j + 1 < tok.size(); ++j) {
          ASSERT_EQ(rows.input_ids[static_cast<size_t>(r * 256) + j], tok[j]);
          ASSERT_EQ(rows.loss_mask[static_cast<size_t>(r * 256) + j], mask[j + 1]);
        }
      }
    }
  }
  // FFD on prefixes packs the bundled prompts tightly at seq_len 256.
  EXPECT_LT(loader.pad_fraction(), 0.12);
  std::printf("bundled collection: %.2f%% padding over 20 steps of 16 x 256\n",
              100 * loader.pad_fraction());
}

}  // namespace
}  // namespace pft

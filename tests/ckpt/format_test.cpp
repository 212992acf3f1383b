// The checkpoint file format: every dtype round-trips bit for bit with its attributes (with and
// without compression); and the corruption suite: a truncated file, one flipped bit in a tensor,
// an empty file, a missing dataset, an unlisted dataset, a file without `complete`, and hostile
// files (external link, soft link, virtual dataset, external storage) are each refused, naming
// the dataset where there is one.
#include <gtest/gtest.h>

#include <algorithm>

#include "ckpt/reader.h"
#include "ckpt/writer.h"
#include "ckpt_test_util.h"
#include "core/error.h"

namespace pft::ckpt {
namespace {

using test::scratch_dir;

template <class T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

Contents every_dtype() {
  Contents c;
  c.group("/meta")["step"] = int64_t{7};
  c.group("/meta")["lr"] = 0.25;
  c.group("/meta")["name"] = std::string("héllo");
  c.group("/a/b")["x"] = int64_t{-3};
  std::vector<float> f32{1.5f, -2.25f, 3e-38f, 0.0f, -0.0f, 1e30f};
  std::vector<double> f64{1.0 / 3, -1e300};
  std::vector<uint16_t> half{0x3c00, 0xc000, 0x7bff, 0x0001};          // 1, -2, 65504, tiny
  std::vector<uint16_t> bf16{0x3f80, 0xc040, 0x7f7f, 0x0001, 0x8000};  // 1, -3, max, tiny, -0
  std::vector<int8_t> i8{-128, 0, 127};
  std::vector<int16_t> i16{-32768, 32767};
  std::vector<int32_t> i32{-5, 6, 7, 8};
  std::vector<int64_t> i64{INT64_MIN, INT64_MAX};
  std::vector<uint8_t> u8{0, 255, 17};
  std::vector<uint8_t> bools{0, 1, 1};
  c.add_copy("/t/f32", DType::kFloat32, {2, 3}, bytes_of(f32));
  c.add_copy("/t/f64", DType::kFloat64, {2}, bytes_of(f64));
  c.add_copy("/t/f16", DType::kFloat16, {4}, bytes_of(half));
  c.add_copy("/t/bf16", DType::kBFloat16, {5, 1}, bytes_of(bf16));
  c.add_copy("/t/i8", DType::kInt8, {3}, bytes_of(i8));
  c.add_copy("/t/i16", DType::kInt16, {2}, bytes_of(i16));
  c.add_copy("/t/i32", DType::kInt32, {2, 2}, bytes_of(i32));
  c.add_copy("/t/i64", DType::kInt64, {2}, bytes_of(i64));
  c.add_copy("/t/u8", DType::kUInt8, {3}, bytes_of(u8));
  c.add_copy("/t/bool", DType::kBool, {3}, bytes_of(bools));
  std::vector<float> scalar{42.0f};
  c.add_copy("/t/scalar", DType::kFloat32, {}, bytes_of(scalar));
  c.add_copy("/t/empty", DType::kFloat32, {0, 4}, {});
  c.add_text("/t/text", "line 1\nline 2: ünïcode\n");
  c.add_text("/t/empty_text", "");
  // Big enough to be written in several pieces and compressed in several chunks.
  std::vector<float> big(300000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 977) * 0.5f;
  c.add_copy("/t/big", DType::kFloat32, {3000, 100}, bytes_of(big)).attrs["step"] = int64_t{9};
  return c;
}

void expect_same(const Contents& want, const Contents& got) {
  ASSERT_EQ(want.datasets().size(), got.datasets().size());
  for (const Dataset& w : want.datasets()) {
    const Dataset* g = got.find(w.path);
    ASSERT_NE(g, nullptr) << w.path;
    EXPECT_EQ(g->dtype, w.dtype) << w.path;
    EXPECT_EQ(g->shape, w.shape) << w.path;
    ASSERT_EQ(g->bytes.size(), w.bytes.size()) << w.path;
    // Not memcmp: an empty dataset's data() may be null, which memcmp must not get (UBSan).
    EXPECT_TRUE(std::ranges::equal(g->bytes, w.bytes)) << w.path;
    EXPECT_EQ(g->attrs, w.attrs) << w.path;
  }
  for (const auto& [g, attrs] : want.groups()) {
    ASSERT_TRUE(got.has_group(g)) << g;
    EXPECT_EQ(got.group_attrs(g), attrs) << g;
  }
}

TEST(CkptFormat, EveryDtypeRoundTrips) {
  const auto dir = scratch_dir("dtypes");
  const Contents c = every_dtype();
  const WriteStats st = write_checkpoint(dir / "x.h5", c);
  EXPECT_EQ(st.data_bytes, c.total_bytes());
  EXPECT_GT(st.file_bytes, st.data_bytes);
  const Contents r = read_checkpoint(dir / "x.h5");
  expect_same(c, r);
  EXPECT_EQ(r.at("/t/text").text(), "line 1\nline 2: ünïcode\n");
  EXPECT_EQ(r.at("/t/empty_text").text(), "");
  const Verification v = verify_checkpoint(dir / "x.h5");
  EXPECT_TRUE(v.ok) << v.reason;
  EXPECT_EQ(v.datasets, static_cast<int64_t>(c.datasets().size()));
  // No temporary file left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            1);
  std::filesystem::remove_all(dir);
}

TEST(CkptFormat, GzipRoundTripsAndIsSmaller) {
  const auto dir = scratch_dir("gzip");
  const Contents c = every_dtype();
  WriteOptions o;
  o.compression = Compression::kGzip;
  o.piece_bytes = 100000;  // several pieces per dataset
  const WriteStats plain = write_checkpoint(dir / "plain.h5", c);
  const WriteStats gz = write_checkpoint(dir / "gz.h5", c, o);
  EXPECT_LT(gz.file_bytes, plain.file_bytes / 2);
  expect_same(c, read_checkpoint(dir / "gz.h5"));
  std::filesystem::remove_all(dir);
}

TEST(CkptFormat, SelectiveReadListsWithoutBytes) {
  const auto dir = scratch_dir("select");
  write_checkpoint(dir / "x.h5", test::sample_contents(3));
  const Contents m = read_checkpoint_meta(dir / "x.h5");
  EXPECT_EQ(attr_int(m.group_attrs(kMeta), kAttrStep, kMeta), 3);
  const Dataset& w = m.at("/model/transformer.wte.weight");
  EXPECT_FALSE(w.loaded);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{100, 10}));
  EXPECT_TRUE(m.at(kMetaConfig).loaded);
  std::filesystem::remove_all(dir);
}

// ---- Corruption suite -----------------------------------------------------------------------

struct Corrupted {
  std::filesystem::path dir, file;
  Corrupted(const std::string& tag) : dir(scratch_dir(tag)), file(dir / "step_00000001.h5") {
    write_checkpoint(file, test::sample_contents(1));
  }
  ~Corrupted() { std::filesystem::remove_all(dir); }
  // The reason pft gives for the altered file with its seal recomputed (test::reseal): what a
  // crafted file reaches, past the whole-file seal.
  std::string reason() const {
    test::reseal(file);
    return sealed_reason();
  }
  // The reason for the altered file as it is (a damaged sealed file).
  std::string sealed_reason() const {
    const Verification v = verify_checkpoint(file);
    EXPECT_FALSE(v.ok);
    try {
      read_checkpoint(file);
      ADD_FAILURE() << "read_checkpoint accepted a bad file";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
    }
    return v.reason;
  }
};

TEST(CkptCorruption, TruncatedFile) {
  Corrupted c("trunc");
  std::filesystem::resize_file(c.file, std::filesystem::file_size(c.file) / 2);
  EXPECT_NE(c.reason(), "");
}

TEST(CkptCorruption, TruncatedJustTheTail) {
  Corrupted c("trunc-tail");
  std::filesystem::resize_file(c.file, std::filesystem::file_size(c.file) - 1);
  EXPECT_NE(c.reason(), "");
}

TEST(CkptCorruption, FlippedBitInTensorNamesTheDataset) {
  Corrupted c("flip");
  const std::string ds = "/model/transformer.wte.weight";
  test::flip_bit(c.file, test::data_offset(c.file, ds) + 1234);
  const std::string r = c.reason();
  EXPECT_NE(r.find(ds), std::string::npos) << r;
  EXPECT_NE(r.find("checksum mismatch"), std::string::npos) << r;
}

TEST(CkptCorruption, FlippedBitInSmallTensor) {
  Corrupted c("flip-small");
  const std::string ds = "/data/next_sample";
  test::flip_bit(c.file, test::data_offset(c.file, ds), 0);
  EXPECT_NE(c.reason().find(ds), std::string::npos);
}

TEST(CkptCorruption, EmptyFile) {
  Corrupted c("empty");
  std::filesystem::resize_file(c.file, 0);
  EXPECT_NE(c.reason().find("empty file"), std::string::npos);
}

TEST(CkptCorruption, NotHdf5) {
  Corrupted c("garbage");
  std::ofstream(c.file, std::ios::trunc) << "this is not a checkpoint\n";
  EXPECT_NE(c.reason().find("not an HDF5 file"), std::string::npos);
}

TEST(CkptCorruption, MissingDataset) {
  Corrupted c("missing");
  const hid_t f = test::open_rw(c.file);
  ASSERT_GE(H5Ldelete(f, "/optimizer/exp_avg/transformer.wte.weight", H5P_DEFAULT), 0);
  H5Fclose(f);
  const std::string r = c.reason();
  EXPECT_NE(r.find("dataset /optimizer/exp_avg/transformer.wte.weight is missing"),
            std::string::npos)
      << r;
}

TEST(CkptCorruption, DatasetNotInManifest) {
  Corrupted c("extra");
  const hid_t f = test::open_rw(c.file);
  const hsize_t n[1] = {4};
  const hid_t sp = H5Screate_simple(1, n, nullptr);
  const hid_t d =
      H5Dcreate2(f, "/model/injected", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(f);
  EXPECT_NE(c.reason().find("/model/injected is not listed"), std::string::npos);
}

TEST(CkptCorruption, IncompleteFile) {
  Corrupted c("incomplete");
  const hid_t f = test::open_rw(c.file);
  ASSERT_GE(H5Adelete(f, kAttrComplete), 0);
  H5Fclose(f);
  EXPECT_NE(c.reason().find("incomplete"), std::string::npos);
}

TEST(CkptCorruption, TamperedManifest) {
  Corrupted c("manifest");
  test::flip_bit(c.file, test::data_offset(c.file, kManifest) + 20, 1);
  EXPECT_NE(c.reason().find("/manifest"), std::string::npos);
}

// ---- Whole-file seal (Note [file seal], core/hdf5.cpp) -----------------------------------------

TEST(CkptSeal, WrittenFilesAreSealedAndRead) {
  Corrupted c("seal-ok");
  const h5::SealCheck s = h5::check_seal(c.file);
  EXPECT_TRUE(s.sealed);
  EXPECT_EQ(s.damage, "");
  std::ifstream in(c.file, std::ios::binary);
  std::string head(32, '\0');
  in.read(head.data(), 32);
  EXPECT_EQ(head.rfind("pft-hdf5-seal v1 xxh3-64:", 0), 0u) << head;
  EXPECT_TRUE(verify_checkpoint(c.file).ok);
}

// One flipped byte anywhere -- the seal header, HDF5's superblock and object headers near the
// start, the data, the metadata HDF5 writes at the end -- is refused by the seal, before HDF5
// reads the file (HDF5 1.10 crashes on some of these: docs/reliability.md).
TEST(CkptSeal, FlippedByteAnywhereIsRefusedBeforeHdf5) {
  const auto size = static_cast<uint64_t>([] {
    Corrupted c("seal-size");
    return std::filesystem::file_size(c.file);
  }());
  const std::vector<uint64_t> offsets{20, 100, 4095, 4096, 4100, 4600, 6000, 8192, 9000,
                                      size / 2, size - 600, size - 100, size - 1};
  for (const uint64_t off : offsets) {
    Corrupted c("seal-flip");
    ASSERT_EQ(std::filesystem::file_size(c.file), size);
    test::flip_bit(c.file, off, 2);
    const std::string r = c.sealed_reason();
    EXPECT_NE(r.find("damaged"), std::string::npos) << "offset " << off << ": " << r;
    if (off >= h5::kSealBytes)
      EXPECT_NE(r.find("whole-file checksum mismatch"), std::string::npos) << off << ": " << r;
    else
      EXPECT_NE(r.find("seal"), std::string::npos) << off << ": " << r;
  }
}

TEST(CkptSeal, TruncatedOrExtendedIsRefusedBySize) {
  Corrupted c("seal-trunc");
  std::filesystem::resize_file(c.file, std::filesystem::file_size(c.file) - 1);
  EXPECT_NE(c.sealed_reason().find("whole-file size mismatch"), std::string::npos);
  Corrupted d("seal-ext");
  std::filesystem::resize_file(d.file, std::filesystem::file_size(d.file) + 4096);
  EXPECT_NE(d.sealed_reason().find("whole-file size mismatch"), std::string::npos);
}

// An older pft's file (no user block) is read as before.
TEST(CkptSeal, UnsealedFileIsStillRead) {
  const std::filesystem::path dir = scratch_dir("unsealed");
  const std::filesystem::path file = dir / "step_00000001.h5";
  WriteOptions old_layout;
  old_layout.seal = false;  // no user block: the layout of pft before the seal
  write_checkpoint(file, test::sample_contents(3), old_layout);
  {
    std::ifstream in(file, std::ios::binary);
    std::string head(8, '\0');
    in.read(head.data(), 8);
    EXPECT_EQ(head, std::string("\x89HDF\r\n\x1a\n", 8));
  }
  EXPECT_FALSE(h5::check_seal(file).sealed);
  EXPECT_EQ(h5::check_seal(file).damage, "");
  const Verification v = verify_checkpoint(file);
  EXPECT_TRUE(v.ok) << v.reason;
  EXPECT_EQ(read_checkpoint_meta(file).group(kMeta).at(kAttrStep), AttrValue(int64_t{3}));
  std::filesystem::remove_all(dir);
}

// ---- Hostile files --------------------------------------------------------------------------

TEST(CkptHostile, ExternalLinkRefused) {
  Corrupted c("elink");
  const hid_t f = test::open_rw(c.file);
  ASSERT_GE(
      H5Lcreate_external("/etc/passwd.h5", "/secret", f, "/model/evil", H5P_DEFAULT, H5P_DEFAULT),
      0);
  H5Fclose(f);
  const std::string r = c.reason();
  EXPECT_NE(r.find("/model/evil is a external link"), std::string::npos) << r;
}

TEST(CkptHostile, SoftLinkRefused) {
  Corrupted c("slink");
  const hid_t f = test::open_rw(c.file);
  ASSERT_GE(
      H5Lcreate_soft("/model/transformer.ln_f.bias", f, "/model/alias", H5P_DEFAULT, H5P_DEFAULT),
      0);
  H5Fclose(f);
  EXPECT_NE(c.reason().find("/model/alias is a soft link"), std::string::npos);
}

TEST(CkptHostile, VirtualDatasetRefused) {
  Corrupted c("vds");
  const hid_t f = test::open_rw(c.file);
  const hsize_t n[1] = {10};
  const hid_t sp = H5Screate_simple(1, n, nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  ASSERT_GE(H5Pset_virtual(dcpl, sp, "/tmp/other.h5", "/data", sp), 0);
  const hid_t d =
      H5Dcreate2(f, "/model/virtual", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(d, 0);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(sp);
  H5Fclose(f);
  EXPECT_NE(c.reason().find("/model/virtual is a virtual dataset"), std::string::npos);
}

TEST(CkptHostile, ExternalStorageRefused) {
  Corrupted c("extstore");
  const hid_t f = test::open_rw(c.file);
  const hsize_t n[1] = {10};
  const hid_t sp = H5Screate_simple(1, n, nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  ASSERT_GE(H5Pset_external(dcpl, "/etc/hostname", 0, 40), 0);
  const hid_t d =
      H5Dcreate2(f, "/model/external", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(d, 0);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(sp);
  H5Fclose(f);
  EXPECT_NE(c.reason().find("/model/external keeps its data in external files"), std::string::npos);
}

}  // namespace
}  // namespace pft::ckpt

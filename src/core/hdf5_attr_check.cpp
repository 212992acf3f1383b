// Checks an object's attribute messages in the file before HDF5 decodes them (contract:
// core/hdf5.h, check_attribute_messages; Note [attribute messages]).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/format.h"
#include "core/hdf5.h"

namespace pft::h5 {

// Note [attribute messages]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// HDF5 1.10 decodes an attribute message (H5O_attr_decode) trusting the sizes inside it: the
// name is copied up to its NUL wherever that is, and the value's size (elements of the dataspace
// x bytes of the datatype) is checked against the whole message, not against what is left of it
// after the name, datatype and dataspace. A crafted or damaged object header therefore makes
// HDF5 read past its buffer (fuzz finding 7 in docs/reliability.md, through H5Aopen, H5Aexists
// and H5Aiterate). Later HDF5 releases bound every field; Debian's 1.10 does not.
//
// So before pft asks HDF5 about an object's attributes in a file opened read-only, it reads the
// object header's raw bytes itself (version 1 and 2 headers, every continuation chunk) and
// checks each attribute message: a NUL-terminated name of the stored length; a datatype of a
// class pft writes (integer, float, fixed or variable-length string) whose fixed fields lie in
// the message; a dataspace whose dimensions lie in the message; and a value that fits in what
// is left. Attributes in dense storage (version 2 headers past 8 attributes: checkpoints'
// /meta) live in a fractal heap: the name index v2 B-tree gives each one's heap ID, the heap's
// doubling table gives its block, and the message there is checked the same way. Shared
// messages, shared datatypes/dataspaces, filtered heaps and huge heap objects, which pft never
// writes, are refused rather than followed. Everything HDF5 then decodes lies inside the
// message. Files opened read-write are pft's own, being written: their headers may not be on
// disk yet, and they are not checked.
//
// The walk is bounded (blocks, B-tree nodes, depth, chunk and block sizes) so a crafted file
// cannot make it loop or allocate without limit. It reads the raw bytes with its own stream: a
// few small reads per call, cheap next to the HDF5 calls it guards.

namespace {

constexpr uint16_t kMsgAttribute = 0x000C;
constexpr uint16_t kMsgContinuation = 0x0010;
constexpr uint16_t kMsgAttributeInfo = 0x0015;
constexpr size_t kMaxChunks = 4096;
constexpr uint64_t kMaxChunkBytes = 16u << 20;  // header chunks are at most a few KiB in practice

struct Context {
  std::string where;  // the object, for messages
  size_t sizeof_addr = 8;
  size_t sizeof_size = 8;
  // HDF5's "undefined address" (all bits set) in sizeof_addr bytes.
  uint64_t undefined_address() const {
    return sizeof_addr >= 8 ? UINT64_MAX : (uint64_t{1} << (8 * sizeof_addr)) - 1;
  }
};

[[noreturn]] void refuse(const Context& c, const std::string& what) {
  throw Hdf5Error(fmt::format("{}: corrupt HDF5 object header: {}; the file is damaged or was "
                              "not written by pft (refused before HDF5 decodes it: Note "
                              "[attribute messages])",
                              c.where, what),
                  "");
}

uint64_t le(std::string_view b, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}

class RawFile {
 public:
  RawFile(const std::string& path, uint64_t base) : in_(path, std::ios::binary), base_(base) {
    in_.seekg(0, std::ios::end);
    size_ = in_ ? static_cast<uint64_t>(in_.tellg()) : 0;
  }
  bool ok() const { return static_cast<bool>(in_); }

  // The `n` bytes at HDF5 address `addr` (relative to the base address), or false past the end.
  bool read(uint64_t addr, uint64_t n, std::string* out) {
    if (addr > size_ || base_ > size_ - addr || n > size_ - base_ - addr) return false;
    out->resize(static_cast<size_t>(n));
    in_.seekg(static_cast<std::streamoff>(base_ + addr));
    in_.read(out->data(), static_cast<std::streamsize>(n));
    return static_cast<bool>(in_);
  }
  // Up to `n` bytes at `addr` (fewer at the end of the file); false past the end.
  bool read_at_most(uint64_t addr, uint64_t n, std::string* out) {
    if (addr > size_ || base_ > size_ - addr) return false;
    return read(addr, std::min(n, size_ - base_ - addr), out);
  }

 private:
  std::ifstream in_;
  uint64_t base_ = 0;
  uint64_t size_ = 0;
};

// Bytes per element of the datatype message `b`; refuses classes pft never writes.
uint64_t datatype_size(const Context& c, std::string_view b, int depth) {
  if (b.size() < 8) refuse(c, fmt::format("attribute datatype of {} bytes", b.size()));
  const unsigned cls = static_cast<uint8_t>(b[0]) & 0x0F;
  const uint64_t size = le(b, 4, 4);
  size_t fixed = 8;  // class, version, bit fields, size
  uint64_t elem = size;
  switch (cls) {
    case 0: fixed += 4; break;   // integer: offset, precision
    case 1: fixed += 12; break;  // float: offset, precision, exponent and mantissa fields
    case 3: break;               // fixed-length string
    case 9:                      // variable-length (string or sequence): base type follows
      if (depth > 0) refuse(c, "nested variable-length attribute datatype");
      datatype_size(c, b.substr(8), depth + 1);
      // HDF5 1.10 keeps the stored size (the type's location is not yet set when the attribute
      // decoder sizes the value): it must be what a reference into the global heap takes.
      if (size != 4 + 4 + c.sizeof_addr)
        refuse(c, fmt::format("a variable-length attribute datatype of {} bytes", size));
      break;
    default:
      refuse(c, fmt::format("attribute datatype class {} (pft writes integers, floats and strings)",
                            cls));
  }
  if (b.size() < fixed)
    refuse(c, fmt::format("attribute datatype of class {} in {} bytes", cls, b.size()));
  if (elem == 0) refuse(c, "attribute datatype of 0 bytes");
  return elem;
}

// Number of elements of the dataspace message `b`.
uint64_t dataspace_elements(const Context& c, std::string_view b) {
  if (b.size() < 4) refuse(c, fmt::format("attribute dataspace of {} bytes", b.size()));
  const unsigned version = static_cast<uint8_t>(b[0]);
  const unsigned rank = static_cast<uint8_t>(b[1]);
  const unsigned flags = static_cast<uint8_t>(b[2]);
  if (version != 1 && version != 2) refuse(c, fmt::format("attribute dataspace version {}", version));
  if (rank > 32) refuse(c, fmt::format("attribute dataspace of rank {}", rank));
  const size_t dims_at = version == 1 ? 8 : 4;
  const unsigned type = version == 2 ? static_cast<uint8_t>(b[3]) : (rank > 0 ? 1 : 0);
  if (type > 2) refuse(c, fmt::format("attribute dataspace of type {}", type));
  const uint64_t dims_bytes = uint64_t{rank} * c.sizeof_size * ((flags & 1) ? 2 : 1);
  if (dims_at + dims_bytes > b.size())
    refuse(c, fmt::format("attribute dataspace of rank {} in {} bytes", rank, b.size()));
  if (type == 2) return 0;  // null
  uint64_t n = 1;
  for (unsigned d = 0; d < rank; ++d) {
    const uint64_t dim = le(b, dims_at + d * c.sizeof_size, c.sizeof_size);
    if (dim != 0 && n > UINT64_MAX / dim) refuse(c, "attribute dataspace overflows 64 bits");
    n *= dim;
  }
  return n;
}

void check_attribute(const Context& c, std::string_view b) {
  const auto need = [&](uint64_t end, const char* what) {
    if (end > b.size())
      refuse(c, fmt::format("an attribute message of {} bytes is too short for its {}", b.size(),
                            what));
  };
  need(8, "header");
  const unsigned version = static_cast<uint8_t>(b[0]);
  if (version < 1 || version > 3) refuse(c, fmt::format("attribute message version {}", version));
  if (version >= 2 && (static_cast<uint8_t>(b[1]) & 0x03) != 0)
    refuse(c, "an attribute with a shared datatype or dataspace (pft never writes one)");
  const uint64_t name_len = le(b, 2, 2), dt_len = le(b, 4, 2), ds_len = le(b, 6, 2);
  const auto padded = [&](uint64_t n) { return version == 1 ? (n + 7) / 8 * 8 : n; };
  uint64_t at = version == 3 ? 9 : 8;
  need(at + padded(name_len), "name");
  if (name_len == 0 || b[at + name_len - 1] != '\0' ||
      std::memchr(b.data() + at, '\0', name_len - 1) != nullptr)
    refuse(c, fmt::format("an attribute name that is not a string of its stored {} bytes",
                          name_len));
  at += padded(name_len);
  need(at + padded(dt_len), "datatype");
  const uint64_t elem = datatype_size(c, b.substr(at, dt_len), 0);
  at += padded(dt_len);
  need(at + padded(ds_len), "dataspace");
  const uint64_t n = dataspace_elements(c, b.substr(at, ds_len));
  at += padded(ds_len);
  if (n > (b.size() - at) / elem)
    refuse(c, fmt::format("an attribute value of {} x {} bytes in the {} bytes left of its message",
                          n, elem, b.size() - at));
}

struct Chunk {
  uint64_t addr;
  uint64_t size;
};

// ---- dense attribute storage: a fractal heap of attribute messages, found by a v2 B-tree of
// their names (HDF5 file format specification, sections III.G and III.A.2) -------------------

struct DenseAttributes {
  uint64_t heap;   // fractal heap header address
  uint64_t names;  // v2 B-tree (name index) header address
};

constexpr size_t kMaxBlocks = 4096;     // fractal heap blocks / B-tree nodes visited per object
constexpr unsigned kMaxDepth = 8;       // of indirect blocks and of B-tree nodes
constexpr uint64_t kMaxBlockBytes = 16u << 20;
constexpr uint64_t kMaxNodeBytes = 64u << 10;   // B-tree nodes: HDF5 writes 512-byte ones here
constexpr uint64_t kMaxAttributes = 65536;      // per object; pft writes a few dozen
constexpr uint64_t kMaxObjectBytes = 64u << 10;  // managed heap objects: HDF5 writes <= 4 KiB ones

// A little-endian reader over one structure's bytes that refuses (naming `what`) when it runs
// past them.
class Cursor {
 public:
  Cursor(const Context& c, std::string_view b, const char* what) : c_(c), b_(b), what_(what) {}
  uint64_t take(size_t n) {
    if (n > b_.size() - at_) refuse(c_, fmt::format("a truncated {}", what_));
    const uint64_t v = le(b_, at_, n);
    at_ += n;
    return v;
  }
  void skip(size_t n) { (void)take_bytes(n); }
  std::string_view take_bytes(size_t n) {
    if (n > b_.size() - at_) refuse(c_, fmt::format("a truncated {}", what_));
    const std::string_view v = b_.substr(at_, n);
    at_ += n;
    return v;
  }
  void expect_signature(std::string_view sig) {
    if (take_bytes(sig.size()) != sig) refuse(c_, fmt::format("a {} without its signature", what_));
  }

 private:
  const Context& c_;
  std::string_view b_;
  const char* what_;
  size_t at_ = 0;
};

unsigned log2_exact(const Context& c, uint64_t v, const char* what) {
  if (v == 0 || (v & (v - 1)) != 0) refuse(c, fmt::format("a {} of {} (not a power of 2)", what, v));
  unsigned n = 0;
  while ((v >> n) != 1) ++n;
  return n;
}

unsigned floor_log2(uint64_t v) {
  unsigned n = 0;
  while (v >>= 1) ++n;
  return n;
}

// Bytes HDF5 uses to store a count up to `n` (H5VM_limit_enc_size).
size_t count_size(uint64_t n) { return floor_log2(n) / 8 + 1; }

struct Heap {
  uint64_t id_len = 0;
  unsigned flags = 0;
  uint64_t width = 0;
  uint64_t start = 0;       // starting block size
  uint64_t max_direct = 0;  // maximum direct block size
  unsigned max_direct_rows = 0;
  size_t off_size = 0;  // bytes of a heap offset (in heap IDs and block headers)
  size_t len_size = 0;  // bytes of an object length in a heap ID
  uint64_t addr = 0;         // of the heap header
  uint64_t max_managed = 0;  // largest object stored in a direct block
  uint64_t root = 0;
  unsigned root_rows = 0;
  struct Block {
    uint64_t offset;  // in the heap's address space
    uint64_t size;
    uint64_t addr;
  };
  std::vector<Block> direct;  // every allocated direct block
  std::set<uint64_t> seen;     // addresses of the blocks walked (a crafted heap may alias them)

  uint64_t row_block_size(unsigned row) const { return row == 0 ? start : start << (row - 1); }
  uint64_t row_offset(unsigned row) const { return row == 0 ? 0 : (width * start) << (row - 1); }
};

Heap read_heap_header(const Context& c, RawFile& raw, uint64_t addr) {
  std::string bytes;
  if (!raw.read_at_most(addr, 256, &bytes)) refuse(c, "an attribute heap past the end of the file");
  Cursor k(c, bytes, "fractal heap header");
  const size_t O = c.sizeof_addr, L = c.sizeof_size;
  Heap h;
  k.expect_signature("FRHP");
  if (k.take(1) != 0) refuse(c, "a fractal heap of an unknown version");
  h.id_len = k.take(2);
  if (h.id_len < 2 || h.id_len > 64) refuse(c, "an attribute heap with impossible heap IDs");
  if (k.take(2) != 0) refuse(c, "a filtered attribute heap (pft never writes one)");
  h.flags = static_cast<unsigned>(k.take(1));
  h.max_managed = k.take(4);
  k.skip(L + O + L + O + L + L + L + L + L + L + L + L);  // huge objects, free space, counts
  h.width = k.take(2);
  h.start = k.take(L);
  h.max_direct = k.take(L);
  const uint64_t max_heap_bits = k.take(2);
  k.skip(2);  // starting rows of the root indirect block
  h.root = k.take(O);
  h.root_rows = static_cast<unsigned>(k.take(2));
  h.addr = addr;
  const unsigned start_bits = log2_exact(c, h.start, "heap starting block size");
  const unsigned direct_bits = log2_exact(c, h.max_direct, "heap maximum direct block size");
  (void)log2_exact(c, h.width, "heap table width");
  const unsigned width_bits = log2_exact(c, h.width, "heap table width");
  // The root's rows must stay inside the heap's address space, or row offsets wrap and one block
  // is reachable from several places.
  if (direct_bits < start_bits || h.max_direct > kMaxBlockBytes || h.width > 65536 ||
      max_heap_bits < direct_bits || max_heap_bits > 64 ||
      uint64_t{h.root_rows} + start_bits + width_bits > max_heap_bits + 1)
    refuse(c, "an attribute heap with an impossible doubling table");
  if (h.max_managed == 0 || h.max_managed > h.max_direct || h.max_managed > kMaxObjectBytes)
    refuse(c, fmt::format("an attribute heap whose objects may take {} bytes", h.max_managed));
  h.max_direct_rows = direct_bits - start_bits + 2;
  // Heap IDs as HDF5 sizes them (H5HF__hdr_finish_init_phase1): the offset in the heap's address
  // space, then the length, in as few bytes as their largest values need.
  h.off_size = (max_heap_bits + 7) / 8;
  h.len_size = std::min<size_t>((direct_bits + 7) / 8, count_size(h.max_managed));
  if (1 + h.off_size + h.len_size > 8)  // the name index's records hold 8-byte heap IDs
    refuse(c, "an attribute heap with heap IDs longer than the name index holds");
  return h;
}

// Collects the direct blocks of the indirect block at `addr` (`rows` rows, heap offset `offset`).
void walk_indirect(const Context& c, RawFile& raw, Heap* h, uint64_t addr, unsigned rows,
                   uint64_t offset, unsigned depth, size_t* visited) {
  if (depth > kMaxDepth || ++*visited > kMaxBlocks)
    refuse(c, "an attribute heap deeper or larger than HDF5 writes for attributes");
  if (!h->seen.insert(addr).second) refuse(c, "an attribute heap block reached twice");
  const size_t O = c.sizeof_addr;
  const uint64_t undef = c.undefined_address();
  const uint64_t entries = uint64_t{rows} * h->width;
  std::string bytes;
  if (entries > kMaxBlocks || !raw.read(addr, 4 + 1 + O + h->off_size + entries * O, &bytes))
    refuse(c, "an attribute heap indirect block past the end of the file");
  Cursor k(c, bytes, "fractal heap indirect block");
  k.expect_signature("FHIB");
  k.skip(1 + O);
  if (k.take(h->off_size) != offset) refuse(c, "a heap indirect block at the wrong offset");
  for (unsigned r = 0; r < rows; ++r) {
    for (uint64_t col = 0; col < h->width; ++col) {
      const uint64_t child = k.take(O);
      if (child == undef) continue;
      const uint64_t at = offset + h->row_offset(r) + col * h->row_block_size(r);
      if (r < h->max_direct_rows) {
        if (!h->seen.insert(child).second) refuse(c, "an attribute heap block reached twice");
        h->direct.push_back({at, h->row_block_size(r), child});
      } else {
        const unsigned child_rows =
            floor_log2(h->row_block_size(r)) - floor_log2(h->start * h->width) + 1;
        walk_indirect(c, raw, h, child, child_rows, at, depth + 1, visited);
      }
    }
  }
}

// Checks the header of direct block `b` (signature, version, heap, stored offset); returns its
// size, where the block's objects begin.
uint64_t check_direct_block(const Context& c, RawFile& raw, const Heap& h, const Heap::Block& b) {
  const size_t O = c.sizeof_addr;
  const uint64_t header = 4 + 1 + O + h.off_size + ((h.flags & 0x02) ? 4 : 0);
  if (b.size <= header) refuse(c, "an attribute heap block smaller than its header");
  std::string bytes;
  if (!raw.read(b.addr, header, &bytes)) refuse(c, "an attribute heap block past the end of the file");
  Cursor k(c, bytes, "fractal heap direct block");
  k.expect_signature("FHDB");
  if (k.take(1) != 0) refuse(c, "a heap direct block of an unknown version");
  if (k.take(O) != h.addr) refuse(c, "a heap direct block of another heap");
  if (k.take(h.off_size) != b.offset)
    refuse(c, fmt::format("a heap direct block that says it is at heap offset other than {}",
                          b.offset));
  return header;
}

// The attribute message the heap ID `id` names, checked (check_attribute).
void check_heap_object(const Context& c, RawFile& raw, const Heap& h, std::string_view id) {
  if (id.size() < 1 + h.off_size + h.len_size) refuse(c, "a short attribute heap ID");
  const unsigned flags = static_cast<uint8_t>(id[0]);
  if ((flags >> 6) != 0) refuse(c, "an attribute heap ID of an unknown version");
  const unsigned type = (flags >> 4) & 0x03;
  if (type == 1) refuse(c, "a huge attribute (over the heap's managed size; pft never writes one)");
  if (type == 2) {  // tiny: the object is in the ID itself
    const uint64_t n = (flags & 0x0F) + 1;
    if (n > id.size() - 1) refuse(c, "a tiny attribute longer than its heap ID");
    check_attribute(c, id.substr(1, n));
    return;
  }
  if (type != 0) refuse(c, "an attribute heap ID of an unknown type");
  const uint64_t off = le(id, 1, h.off_size);
  const uint64_t len = le(id, 1 + h.off_size, h.len_size);
  if (len == 0 || len > h.max_managed)
    refuse(c, fmt::format("an attribute of {} bytes in a heap of objects up to {}", len,
                          h.max_managed));
  for (const Heap::Block& b : h.direct) {
    if (off < b.offset || off - b.offset >= b.size) continue;
    // HDF5 finds the object through the offset stored in the block (H5HF__man_op_real), so that
    // one must be the offset its place in the doubling table gives (checked once per block).
    const uint64_t header = check_direct_block(c, raw, h, b);
    if (off - b.offset < header)
      refuse(c, fmt::format("an attribute at heap offset {} inside its block's header", off));
    if (len > b.size - (off - b.offset))
      refuse(c, fmt::format("an attribute of {} bytes at heap offset {} crosses the end of its "
                            "{}-byte block",
                            len, off, b.size));
    std::string object;
    if (!raw.read(b.addr + (off - b.offset), len, &object))
      refuse(c, "an attribute heap block past the end of the file");
    check_attribute(c, object);
    return;
  }
  refuse(c, fmt::format("an attribute at heap offset {} in no block of the heap", off));
}

// Every record of the name index B-tree node at `addr` (`nrec` records, `depth` above leaves).
void walk_btree_node(const Context& c, RawFile& raw, const Heap& heap, uint64_t node_size,
                     uint64_t rec_size, const std::vector<uint64_t>& max_nrec,
                     const std::vector<size_t>& cum_size, size_t nrec_size, uint64_t addr,
                     uint64_t nrec, unsigned depth, size_t* visited, uint64_t* records,
                     std::set<uint64_t>* nodes) {
  if (++*visited > kMaxBlocks) refuse(c, "an attribute name index larger than HDF5 writes");
  if (!nodes->insert(addr).second) refuse(c, "an attribute name index node reached twice");
  if (nrec > max_nrec[depth]) refuse(c, "a name index node with more records than fit in it");
  if ((*records += nrec) > kMaxAttributes)
    refuse(c, fmt::format("more than {} attributes on one object", kMaxAttributes));
  std::string bytes;
  if (!raw.read(addr, node_size, &bytes)) refuse(c, "a name index node past the end of the file");
  Cursor k(c, bytes, "attribute name index node");
  k.expect_signature(depth == 0 ? "BTLF" : "BTIN");
  k.skip(1);
  if (k.take(1) != 8) refuse(c, "a name index node of another B-tree type");
  for (uint64_t i = 0; i < nrec; ++i) {
    const std::string_view rec = k.take_bytes(rec_size);
    if ((static_cast<uint8_t>(rec[8]) & 0x02) != 0)
      refuse(c, "a shared attribute message (pft never writes one)");
    check_heap_object(c, raw, heap, rec.substr(0, 8));
  }
  if (depth == 0) return;
  for (uint64_t i = 0; i <= nrec; ++i) {
    const uint64_t child = k.take(c.sizeof_addr);
    const uint64_t child_nrec = k.take(nrec_size);
    if (depth > 1) k.skip(cum_size[depth - 1]);
    walk_btree_node(c, raw, heap, node_size, rec_size, max_nrec, cum_size, nrec_size, child,
                    child_nrec, depth - 1, visited, records, nodes);
  }
}


void check_dense_attributes(const Context& c, RawFile& raw, const DenseAttributes& d) {
  const size_t O = c.sizeof_addr, L = c.sizeof_size;
  Heap heap = read_heap_header(c, raw, d.heap);
  size_t visited = 0;
  const uint64_t undef = c.undefined_address();
  if (heap.root != undef) {
    if (heap.root_rows == 0)
      heap.direct.push_back({0, heap.start, heap.root});
    else
      walk_indirect(c, raw, &heap, heap.root, heap.root_rows, 0, 0, &visited);
  }
  std::string bytes;
  if (!raw.read(d.names, 4 + 1 + 1 + 4 + 2 + 2 + 1 + 1 + O + 2 + L, &bytes))
    refuse(c, "an attribute name index past the end of the file");
  Cursor k(c, bytes, "attribute name index header");
  k.expect_signature("BTHD");
  k.skip(1);
  if (k.take(1) != 8) refuse(c, "an attribute name index of another B-tree type");
  const uint64_t node_size = k.take(4), rec_size = k.take(2), depth = k.take(2);
  k.skip(2);
  const uint64_t root = k.take(O), root_nrec = k.take(2), total = k.take(L);
  if (node_size < 64 || node_size > kMaxNodeBytes || rec_size < 9 || rec_size > node_size ||
      depth > kMaxDepth)
    refuse(c, "an attribute name index with impossible node sizes");
  // Records per node and the sizes of the counts in child pointers, per depth (H5B2__hdr_init).
  constexpr uint64_t kPrefix = 4 + 1 + 1 + 4;  // signature, version, type, checksum
  std::vector<uint64_t> max_nrec{(node_size - kPrefix) / rec_size};
  std::vector<uint64_t> cum_max{max_nrec[0]};
  std::vector<size_t> cum_size{0};
  const size_t nrec_size = count_size(max_nrec[0]);
  for (unsigned u = 1; u <= depth; ++u) {
    const uint64_t pointer = O + nrec_size + cum_size[u - 1];
    if (node_size < kPrefix + pointer) refuse(c, "an attribute name index with tiny nodes");
    max_nrec.push_back((node_size - kPrefix - pointer) / (rec_size + pointer));
    cum_max.push_back((max_nrec[u] + 1) * cum_max[u - 1] + max_nrec[u]);
    cum_size.push_back(count_size(cum_max[u]));
  }
  if (root == undef) {  // no attributes
    if (total != 0) refuse(c, "an empty attribute name index that says it holds records");
    return;
  }
  uint64_t records = 0;
  std::set<uint64_t> nodes;
  walk_btree_node(c, raw, heap, node_size, rec_size, max_nrec, cum_size, nrec_size, root,
                  root_nrec, static_cast<unsigned>(depth), &visited, &records, &nodes);
  // HDF5 sizes its table of the attributes from this count, then fills it from the walk
  // (H5A__dense_build_table): a smaller count would be a heap overflow.
  if (records != total)
    refuse(c, fmt::format("an attribute name index that says it holds {} records but holds {}",
                          total, records));
}

// Walks the messages of one chunk's message area `m`; appends continuation chunks to `more`.
// `creation_order`: version 2 headers whose flags say attribute creation order is tracked carry
// 2 more bytes in each message header.
void check_messages(const Context& c, std::string_view m, int header_version, bool creation_order,
                    std::vector<Chunk>* more, std::vector<DenseAttributes>* dense) {
  const uint64_t undef = c.undefined_address();
  size_t at = 0;
  while (true) {
    const size_t head = header_version == 1 ? 8 : (creation_order ? 6 : 4);
    if (m.size() - at < head) break;  // the rest is a gap (version 2) or nothing
    uint16_t type;
    uint64_t size;
    if (header_version == 1) {
      type = static_cast<uint16_t>(le(m, at, 2));
      size = le(m, at + 2, 2);
    } else {
      type = static_cast<uint8_t>(m[at]);
      size = le(m, at + 1, 2);
    }
    if (size > m.size() - at - head)
      refuse(c, fmt::format("a message of {} bytes at byte {} of a {}-byte chunk", size, at,
                            m.size()));
    const std::string_view body = m.substr(at + head, size);
    const unsigned flags = static_cast<uint8_t>(m[at + (header_version == 1 ? 4 : 3)]);
    if (type == kMsgAttribute && (flags & 0x02) != 0)
      refuse(c, "a shared attribute message (pft never writes one)");
    if (type == kMsgAttribute) {
      check_attribute(c, body);
    } else if (type == kMsgContinuation) {
      if (body.size() < c.sizeof_addr + c.sizeof_size) refuse(c, "a short continuation message");
      more->push_back({le(body, 0, c.sizeof_addr), le(body, c.sizeof_addr, c.sizeof_size)});
    } else if (type == kMsgAttributeInfo) {
      if (body.size() < 2) refuse(c, "a short attribute info message");
      const size_t heap_at = (static_cast<uint8_t>(body[1]) & 0x01) ? 4 : 2;
      if (body.size() < heap_at + c.sizeof_addr) refuse(c, "a short attribute info message");
      if (body.size() < heap_at + 2 * c.sizeof_addr) refuse(c, "a short attribute info message");
      const uint64_t heap = le(body, heap_at, c.sizeof_addr);
      const uint64_t names = le(body, heap_at + c.sizeof_addr, c.sizeof_addr);
      if (heap != undef || names != undef) dense->push_back({heap, names});
    }
    at += head + size;
  }
}

}  // namespace

void check_attribute_messages(const Object& obj) {
  const hid_t file_id = H5Iget_file_id(obj.id());
  if (file_id < 0) {
    H5Eclear2(H5E_DEFAULT);
    return;  // not in a file: HDF5 itself reports what is wrong with the handle
  }
  const Handle file(file_id);
  unsigned intent = 0;
  PFT_H5_CHECK(H5Fget_intent(file.id(), &intent));
  if (intent & H5F_ACC_RDWR) return;  // pft's own file being written (Note [attribute messages])

  Context c;
  c.where = obj.describe();
  const Handle fcpl(PFT_H5_CHECK(H5Fget_create_plist(file.id())));
  hsize_t userblock = 0;
  PFT_H5_CHECK(H5Pget_userblock(fcpl.id(), &userblock));
  PFT_H5_CHECK(H5Pget_sizes(fcpl.id(), &c.sizeof_addr, &c.sizeof_size));
  if (c.sizeof_addr < 2 || c.sizeof_addr > 8 || c.sizeof_size < 2 || c.sizeof_size > 8)
    refuse(c, fmt::format("addresses of {} and lengths of {} bytes", c.sizeof_addr,
                          c.sizeof_size));
  H5O_info_t info;
  PFT_H5_CHECK_AT(H5Oget_info2(obj.id(), &info, H5O_INFO_BASIC), c.where);
  // Checked objects, by HDF5's number of the open file (never reused in a process) and address:
  // readers ask about one object's attributes many times.
  thread_local std::set<std::pair<unsigned long, haddr_t>> checked;
  if (checked.count({info.fileno, info.addr}) > 0) return;
  const ssize_t name_len = PFT_H5_CHECK(H5Fget_name(file.id(), nullptr, 0));
  std::string path(static_cast<size_t>(name_len) + 1, '\0');
  PFT_H5_CHECK(H5Fget_name(file.id(), path.data(), path.size()));
  path.resize(static_cast<size_t>(name_len));
  RawFile raw(path, userblock);
  if (!raw.ok()) refuse(c, "cannot read the file's raw bytes");

  std::string bytes;
  std::vector<Chunk> chunks;
  int version = 0;
  bool creation_order = false;
  if (!raw.read(info.addr, 4, &bytes)) refuse(c, "its header lies past the end of the file");
  if (bytes == "OHDR") {
    version = 2;
    if (!raw.read(info.addr, 6, &bytes) || bytes[4] != 2) refuse(c, "a bad version 2 prefix");
    const unsigned flags = static_cast<uint8_t>(bytes[5]);
    creation_order = (flags & 0x04) != 0;
    uint64_t at = 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0);
    const size_t width = size_t{1} << (flags & 0x03);
    if (!raw.read(info.addr + at, width, &bytes)) refuse(c, "a truncated version 2 prefix");
    chunks.push_back({info.addr + at + width, le(bytes, 0, width)});
  } else {
    version = 1;
    if (!raw.read(info.addr, 16, &bytes)) refuse(c, "its header lies past the end of the file");
    if (bytes[0] != 1)
      refuse(c, fmt::format("object header version {}", static_cast<uint8_t>(bytes[0])));
    chunks.push_back({info.addr + 16, le(bytes, 8, 4)});
  }
  std::vector<DenseAttributes> dense;
  std::set<uint64_t> seen;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (i >= kMaxChunks) refuse(c, fmt::format("more than {} header chunks", kMaxChunks));
    Chunk ch = chunks[i];
    if (!seen.insert(ch.addr).second) refuse(c, "a continuation chunk that loops back");
    if (version == 2 && i > 0) {  // "OCHK" + messages + checksum
      if (ch.size < 8 || !raw.read(ch.addr, 4, &bytes) || bytes != "OCHK")
        refuse(c, "a bad version 2 continuation chunk");
      ch = {ch.addr + 4, ch.size - 8};
    }
    if (ch.size > kMaxChunkBytes)
      refuse(c, fmt::format("a header chunk of {} bytes (HDF5 writes at most {})", ch.size,
                            kMaxChunkBytes));
    if (!raw.read(ch.addr, ch.size, &bytes))
      refuse(c, fmt::format("a header chunk of {} bytes past the end of the file", ch.size));
    check_messages(c, bytes, version, creation_order, &chunks, &dense);
  }
  if (dense.size() > 1) refuse(c, "more than one attribute info message");
  for (const DenseAttributes& d : dense) check_dense_attributes(c, raw, d);
  if (checked.size() >= 65536) checked.clear();
  checked.insert({info.fileno, info.addr});
}

}  // namespace pft::h5

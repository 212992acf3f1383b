// pft_tokenize: a small driver of pft's tokenizers for the Python parity test and benchmark.
//
//   pft_tokenize encode TOKENIZER_SPEC CASES_FILE OUT_FILE [--specials] [--no-roundtrip]
//       CASES_FILE holds one test string per line, hex-encoded (so any bytes, newlines and
//       invalid UTF-8 included, survive); OUT_FILE gets one line per case: the ids, separated
//       by spaces. --specials encodes with encode_with_specials. Each case is also decoded and
//       must give its bytes back, else the tool fails, unless --no-roundtrip (for tokenizers
//       with add_prefix_space, whose added spaces decode too).
//   pft_tokenize decode TOKENIZER_SPEC IDS_FILE OUT_FILE
//       IDS_FILE holds one case per line, its ids separated by spaces; OUT_FILE gets one line
//       per case: the decoded bytes, hex-encoded.
//   pft_tokenize bench TOKENIZER_SPEC CORPUS_FILE IDS_FILE [REPEATS]
//       Encodes every line of CORPUS_FILE (split at '\n', the '\n' not included) one call per
//       line on one thread, REPEATS times (default 3); prints "pft_encode_mb_per_s=<best>" and
//       writes IDS_FILE: for each line, int32 count then the ids (little-endian int32).
// Exit status 0 on success, 1 with a message on stderr otherwise.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/tokenizer.h"

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  throw std::runtime_error(std::string("bad hex digit '") + c + "'");
}

int run_encode(const pft::Tokenizer& tok, const std::string& cases_path,
               const std::string& out_path, bool specials, bool roundtrip) {
  const std::string cases = read_all(cases_path);
  std::ofstream out(out_path, std::ios::binary);
  std::istringstream lines(cases);
  std::string line;
  std::string text;
  std::vector<int32_t> ids;
  size_t n = 0;
  while (std::getline(lines, line)) {
    if (line.size() % 2 != 0)
      throw std::runtime_error("odd hex length on line " + std::to_string(n + 1));
    text.clear();
    for (size_t i = 0; i < line.size(); i += 2) {
      text.push_back(static_cast<char>(hex_value(line[i]) * 16 + hex_value(line[i + 1])));
    }
    ids.clear();
    tok.encode_append(text, specials, ids);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out << ' ';
      out << ids[i];
    }
    out << '\n';
    if (roundtrip && tok.decode(ids) != text) {
      std::cerr << "pft_tokenize: case " << n + 1 << ": decode(encode(x)) != x\n";
      return 1;
    }
    ++n;
  }
  std::cerr << "pft_tokenize: encoded " << n << " cases\n";
  return out ? 0 : 1;
}

int run_decode(const pft::Tokenizer& tok, const std::string& ids_path,
               const std::string& out_path) {
  std::istringstream lines(read_all(ids_path));
  std::ofstream out(out_path, std::ios::binary);
  std::string line;
  std::vector<int32_t> ids;
  size_t n = 0;
  while (std::getline(lines, line)) {
    ids.clear();
    std::istringstream fields(line);
    for (int32_t id; fields >> id;) ids.push_back(id);
    static const char kHex[] = "0123456789abcdef";
    for (unsigned char c : tok.decode(ids)) out << kHex[c >> 4] << kHex[c & 15];
    out << '\n';
    ++n;
  }
  std::cerr << "pft_tokenize: decoded " << n << " cases\n";
  return out ? 0 : 1;
}

int run_bench(const pft::Tokenizer& tok, const std::string& corpus_path,
              const std::string& ids_path, int repeats) {
  const std::string corpus = read_all(corpus_path);
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos <= corpus.size();) {
    size_t eol = corpus.find('\n', pos);
    if (eol == std::string::npos) {
      if (pos < corpus.size()) lines.push_back(std::string_view(corpus).substr(pos));
      break;
    }
    lines.push_back(std::string_view(corpus).substr(pos, eol - pos));
    pos = eol + 1;
  }
  size_t bytes = 0;
  for (auto l : lines) bytes += l.size();
  std::vector<std::vector<int32_t>> ids(lines.size());
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < lines.size(); ++i) {
      ids[i].clear();
      tok.encode_append(lines[i], /*with_specials=*/false, ids[i]);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double mb_per_s = bytes / 1e6 / s;
    std::cerr << "pft_tokenize: pass " << r + 1 << ": " << mb_per_s << " MB/s\n";
    best = std::max(best, mb_per_s);
  }
  std::ofstream out(ids_path, std::ios::binary);
  for (const auto& v : ids) {
    const int32_t count = static_cast<int32_t>(v.size());
    out.write(reinterpret_cast<const char*>(&count), sizeof count);
    out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  }
  std::printf("pft_encode_mb_per_s=%.3f lines=%zu bytes=%zu\n", best, lines.size(), bytes);
  return out ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() >= 4 && args[0] == "encode") {
      const auto tok = pft::load_tokenizer(args[1]);
      const auto has_flag = [&](const char* flag) {
        return std::find(args.begin() + 4, args.end(), flag) != args.end();
      };
      return run_encode(*tok, args[2], args[3], has_flag("--specials"),
                        !has_flag("--no-roundtrip"));
    }
    if (args.size() == 4 && args[0] == "decode") {
      const auto tok = pft::load_tokenizer(args[1]);
      return run_decode(*tok, args[2], args[3]);
    }
    if (args.size() >= 4 && args[0] == "bench") {
      const auto tok = pft::load_tokenizer(args[1]);
      return run_bench(*tok, args[2], args[3], args.size() >= 5 ? std::stoi(args[4]) : 3);
    }
    std::cerr
        << "usage: pft_tokenize encode SPEC CASES_FILE OUT_FILE [--specials] [--no-roundtrip]\n"
           "       pft_tokenize decode SPEC IDS_FILE OUT_FILE\n"
           "       pft_tokenize bench SPEC CORPUS_FILE IDS_FILE [REPEATS]\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "pft_tokenize: " << e.what() << "\n";
    return 1;
  }
}

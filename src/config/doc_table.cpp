#include "config/doc_table.h"

#include "core/format.h"

namespace pft::config {

std::string markdown_table(const std::vector<DocRow>& rows) {
  std::string md = "| key | type | default | constraint | meaning |\n|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    if (r.type == "section") {
      md += fmt::format("| **`{}`** | section | | | {} |\n", r.path, r.doc);
      continue;
    }
    md += fmt::format("| `{}` | {} | `{}` | {} | {} |\n", r.path, r.type, r.default_value,
                      r.constraint, r.doc);
  }
  return md;
}

}  // namespace pft::config

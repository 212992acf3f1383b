// The Markdown reference table of a schema's DocRows (config/schema.h: DocWriter), as
// `pft config docs` and `pft data docs` print it and docs/config.md / docs/tasks.md hold it.
#pragma once

#include <string>
#include <vector>

#include "config/schema.h"

namespace pft::config {

// "| key | type | default | constraint | meaning |" and one row per DocRow; a section row shows
// its path in bold.
std::string markdown_table(const std::vector<DocRow>& rows);

}  // namespace pft::config

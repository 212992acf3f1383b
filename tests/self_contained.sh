#!/usr/bin/env bash
# self_contained.sh [SOURCE_ROOT]: fail if any file of the repository refers to the data folder
# that sits beside the developers' checkout (the parent directory's `shared` folder). A user's
# clone has nothing beside it, so tests, docs, build and launch scripts must use the copies
# bundled in datasets/ (datasets/tokenizers/gpt2, datasets/natinst).
#
# Files scanned: `git ls-files` (tracked and untracked-but-not-ignored) when SOURCE_ROOT is a git
# checkout; otherwise every file under it except build*/, runs/ and hidden folders (a source
# tarball). The scan fails rather than passes when it saw too few files or when its own pattern
# does not catch a known bad line, so a broken scan cannot pass by accident.
set -euo pipefail
root="$(cd "${1:-$(dirname "${BASH_SOURCE[0]}")/..}" && pwd)"
cd "$root"

# Assembled from pieces so that this script does not match itself. Catches the path written
# with slashes (the parent's folder, its data subfolder) and as joined components (C++
# `".." / "x"`, Python `os.path.join(ROOT, "..", "x")`); the self-check below lists them.
up='\.\.'
dir='shared'
pattern="${up}/${dir}\\b|${dir}/data|[\"']${up}[\"'][ ,/+]*[\"']${dir}[\"']"

# The pattern must catch each of these spellings; if it does not, the scan proves nothing.
for bad in "path: ${up//\\/}/${dir}/x" "kRepo / \"..\" / \"${dir}\" / \"data\"" \
           "os.path.join(ROOT, '..', '${dir}')" "see ${dir}/data/gpt2"; do
  if ! grep -Eq -- "$pattern" <<<"$bad"; then
    echo "self_contained.sh: internal error: the pattern misses '$bad'" >&2
    exit 2
  fi
done

if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
   [[ "$(git -C "$root" rev-parse --show-toplevel)" == "$root" ]]; then
  mode="git ls-files"
  mapfile -d '' files < <(git ls-files -z --cached --others --exclude-standard)
else
  mode="find (not a git checkout)"
  mapfile -d '' files < <(find . \( -name 'build*' -o -name runs -o -name '.?*' \) -prune \
                                 -o -type f -print0)
fi

# Keep only files that still exist (a deleted but not yet committed file is listed by git).
existing=()
declare -A seen=()
for f in "${files[@]}"; do
  [[ -f "$f" ]] || continue
  existing+=("$f")
  seen["${f#./}"]=1
done

# A real checkout has hundreds of files, among them these; fewer means the listing failed.
kMinFiles=100
if (( ${#existing[@]} < kMinFiles )); then
  echo "self_contained.sh: listed only ${#existing[@]} files under $root with $mode" \
       "(expected >= $kMinFiles): is SOURCE_ROOT the repository root?" >&2
  exit 2
fi
for must in CMakeLists.txt tests/self_contained.sh datasets/tokenizers/gpt2/encoder.json \
            datasets/natinst/task1189_check_char_in_string.json; do
  if [[ -z "${seen[$must]:-}" ]]; then
    echo "self_contained.sh: $must is not among the scanned files ($mode under $root)" >&2
    exit 2
  fi
done

# -I: skip binary files; xargs -0 in chunks; grep exits 1 when nothing matched.
hits="$(printf '%s\0' "${existing[@]}" | xargs -0 grep -nIE -- "$pattern" || true)"
if [[ -n "$hits" ]]; then
  echo "self_contained.sh: these lines refer to the folder beside the checkout, which a user's" >&2
  echo "clone does not have; use the bundled copies in datasets/ (datasets/tokenizers/gpt2," >&2
  echo "datasets/natinst) or let the user pass a path:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "self_contained.sh: ${#existing[@]} files scanned ($mode), no reference to the folder" \
     "beside the checkout"

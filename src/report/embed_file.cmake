# cmake -DIN=<file> -DOUT=<file.cpp> -DNAME=<identifier> -DNAMESPACE=<ns> -P embed_file.cmake
#
# Turns a file into a C++ source defining `extern const char NAME[]` (the bytes, NUL-terminated)
# and `extern const std::size_t NAME_size`, so `pft report` carries its page's scripts in the
# binary. A hex array rather than a raw string literal: the file may hold any byte sequence
# (a raw literal's delimiter could occur in it). Run only when IN changes (add_custom_command).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR size "${hex_len} / 2")
# One long line ("0xAB," a byte): compilers take it, and CMake's regex has no {n} to wrap it.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE "${OUT}.tmp"
  "// Generated from ${IN} by src/report/embed_file.cmake. Do not edit.\n"
  "#include <cstddef>\n"
  "namespace ${NAMESPACE} {\n"
  "extern const char ${NAME}[];\n"
  "extern const std::size_t ${NAME}_size;\n"
  "const char ${NAME}[] = {\n${body}0x00};\n"
  "const std::size_t ${NAME}_size = ${size};\n"
  "}  // namespace ${NAMESPACE}\n")
file(RENAME "${OUT}.tmp" "${OUT}")

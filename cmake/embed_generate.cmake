# Writes OUTPUT, a C file defining SYMBOL as the bytes of INPUT plus a NUL.
file(READ ${INPUT} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
file(WRITE ${OUTPUT}
  "/* Generated from ${INPUT} by cmake/embed_generate.cmake; do not edit. */\n"
  "const char ${SYMBOL}[] = {${bytes}0x00};\n"
  "const unsigned long ${SYMBOL}_size = ${size};\n")

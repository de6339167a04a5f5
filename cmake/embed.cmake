# Embeds a file's bytes in the library as a NUL-terminated C array, so the
# program needs no data files at run time:
#   extern const char SYMBOL[]; extern const unsigned long SYMBOL_size;
# The generated source is regenerated whenever the file changes.
function(plm_embed_file target symbol file)
  set(out ${CMAKE_BINARY_DIR}/embedded/${symbol}.c)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DSYMBOL=${symbol} -DINPUT=${file} -DOUTPUT=${out}
            -P ${CMAKE_SOURCE_DIR}/cmake/embed_generate.cmake
    DEPENDS ${file} ${CMAKE_SOURCE_DIR}/cmake/embed_generate.cmake
    COMMENT "Embedding ${file}")
  target_sources(${target} PRIVATE ${out})
endfunction()

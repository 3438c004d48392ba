# agifarm_embed_files(TARGET <target> FUNCTION <ns::fn> FILES name=path ...): generates, at build time,
# a .cpp defining `std::span<const agifarm::web_assets::asset> ns::fn()` over the files and adds it to
# the target. Every file must exist at configure time (a clear error names the missing one).
set(AGIFARM_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/embed.cmake CACHE INTERNAL "src/web_assets/embed.cmake")
function(agifarm_embed_files)
  cmake_parse_arguments(A "" "TARGET;FUNCTION" "FILES" ${ARGN})
  set(paths "")
  foreach(entry IN LISTS A_FILES)
    string(FIND "${entry}" "=" eq)
    math(EXPR from "${eq} + 1")
    string(SUBSTRING "${entry}" ${from} -1 path)
    string(SUBSTRING "${entry}" 0 ${eq} name)
    if(NOT EXISTS "${path}")
      message(FATAL_ERROR "web asset ${name}: ${path} not found; run scripts/setup.sh (it fetches the pinned npm packages into ~/.cache/agifarm/npm)")
    endif()
    list(APPEND paths "${path}")
  endforeach()
  string(REPLACE "::" "_" stem "${A_FUNCTION}")
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${stem}.cpp)
  string(REPLACE ";" "|" files_arg "${A_FILES}")
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DFUNCTION=${A_FUNCTION} "-DFILES=${files_arg}" -P ${AGIFARM_EMBED_SCRIPT}
    DEPENDS ${paths} ${AGIFARM_EMBED_SCRIPT}
    COMMENT "Embedding ${A_FUNCTION}" VERBATIM)
  target_sources(${A_TARGET} PRIVATE ${out})
endfunction()

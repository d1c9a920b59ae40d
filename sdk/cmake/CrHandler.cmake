# cr_add_handler(NAME <id> SOURCES ... [SCHEMAS ...] [LIBRARIES ...])
# Builds one handler shared object <id>.so with hidden visibility, generates its schemas and
# installs it where cr looks for handlers. Built-in and third-party handlers use the same call.
function(cr_add_handler)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;SCHEMAS;LIBRARIES" ${ARGN})
  string(REPLACE "." "_" target "handler_${ARG_NAME}")
  add_library(${target} MODULE ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME "${ARG_NAME}"
    CXX_VISIBILITY_PRESET hidden C_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${CR_HANDLER_OUTPUT_DIR}")
  target_link_libraries(${target} PRIVATE cr::sdk ${ARG_LIBRARIES})
  target_link_options(${target} PRIVATE -Wl,--no-undefined -Wl,-z,now)
  if(ARG_SCHEMAS)
    cr_flatbuffers(${target}_schemas OUTPUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/schemas SCHEMAS ${ARG_SCHEMAS})
    target_link_libraries(${target} PRIVATE ${target}_schemas)
  endif()
  string(REPLACE "." "-" component "${ARG_NAME}")
  string(REGEX REPLACE "^cr-" "handler-" component "${component}")
  install(TARGETS ${target} LIBRARY DESTINATION "${CR_HANDLER_INSTALL_DIR}" COMPONENT ${component})
  set(CR_LAST_HANDLER_TARGET ${target} PARENT_SCOPE)
endfunction()

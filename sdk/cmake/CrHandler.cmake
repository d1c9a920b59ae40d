# cr_add_handler(NAME <id> SOURCES ... [SCHEMAS a.fbs ...] [LIBRARIES ...] [COMPONENT <name>])
# Builds one handler shared object <id>.so with hidden visibility, generates its schemas (C++
# headers on its include path, .bfbs reflection files for `cr decode`) and installs both where
# cr looks for them. Built-in and third-party handlers use the same call: inside the cr tree the
# layout variables come from the top-level CMakeLists.txt, outside it from crConfig.cmake.
#
# Install component: COMPONENT, default "handler-<id without cr., dots as dashes>", which the
# packaging turns into the package cr-handler-<...>.

# Defaults mirror the install tree in the build tree, as cr's own build does; crConfig.cmake sets
# the install directories of the cr it belongs to before including this file.
include(GNUInstallDirs)
if(NOT DEFINED CR_HANDLER_INSTALL_DIR)
  set(CR_HANDLER_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cr/handlers")
endif()
if(NOT DEFINED CR_SCHEMA_INSTALL_DIR)
  set(CR_SCHEMA_INSTALL_DIR "${CMAKE_INSTALL_DATADIR}/cr/schemas")
endif()
if(NOT DEFINED CR_HANDLER_OUTPUT_DIR)
  set(CR_HANDLER_OUTPUT_DIR "${CMAKE_BINARY_DIR}/lib/cr/handlers")
endif()
if(NOT DEFINED CR_SCHEMA_OUTPUT_DIR)
  set(CR_SCHEMA_OUTPUT_DIR "${CMAKE_BINARY_DIR}/share/cr/schemas")
endif()

function(cr_add_handler)
  cmake_parse_arguments(ARG "" "NAME;COMPONENT" "SOURCES;SCHEMAS;LIBRARIES" ${ARGN})
  if(NOT ARG_NAME OR NOT ARG_SOURCES)
    message(FATAL_ERROR "cr_add_handler: NAME and SOURCES are required")
  endif()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "cr_add_handler(${ARG_NAME}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TARGET cr::sdk OR NOT COMMAND cr_flatbuffers)
    message(FATAL_ERROR "cr_add_handler: the cr SDK is not loaded (find_package(cr CONFIG REQUIRED))")
  endif()

  string(REPLACE "." "_" target "handler_${ARG_NAME}")
  add_library(${target} MODULE ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME "${ARG_NAME}"
    CXX_EXTENSIONS ON  # CR_TRY is a statement expression
    CXX_VISIBILITY_PRESET hidden C_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${CR_HANDLER_OUTPUT_DIR}")
  target_link_libraries(${target} PRIVATE cr::sdk ${ARG_LIBRARIES})
  target_link_options(${target} PRIVATE -Wl,--no-undefined -Wl,-z,now)

  set(component "${ARG_COMPONENT}")
  if(NOT component)
    string(REGEX REPLACE "^cr\\." "" component "${ARG_NAME}")
    string(REPLACE "." "-" component "handler-${component}")
  endif()

  if(ARG_SCHEMAS)
    # A directory per handler keeps its .bfbs apart from every other package's.
    set(schema_dir "${CR_SCHEMA_OUTPUT_DIR}/${ARG_NAME}")
    cr_flatbuffers(${target}_schemas OUTPUT_DIR "${schema_dir}" SCHEMAS ${ARG_SCHEMAS})
    target_link_libraries(${target} PRIVATE ${target}_schemas)
    set(schema_files)
    foreach(schema ${ARG_SCHEMAS})
      get_filename_component(abs "${schema}" ABSOLUTE)
      get_filename_component(stem "${schema}" NAME_WE)
      list(APPEND schema_files "${abs}" "${schema_dir}/${stem}.bfbs")
    endforeach()
    install(FILES ${schema_files} DESTINATION "${CR_SCHEMA_INSTALL_DIR}/${ARG_NAME}"
            COMPONENT ${component})
  endif()

  install(TARGETS ${target} LIBRARY DESTINATION "${CR_HANDLER_INSTALL_DIR}" COMPONENT ${component})
  # The packaging makes one package per handler from this list.
  set_property(GLOBAL APPEND PROPERTY CR_HANDLERS "${ARG_NAME}=${component}")
  set(CR_LAST_HANDLER_TARGET ${target} PARENT_SCOPE)
endfunction()

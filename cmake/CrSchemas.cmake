# cr_flatbuffers(TARGET OUTPUT_DIR DIR SCHEMAS a.fbs b.fbs ...)
# Generates C++ headers (<name>_generated.h) and reflection files (<name>.bfbs) into DIR and
# makes TARGET an INTERFACE library that puts DIR on the include path.
function(cr_flatbuffers target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIR" "SCHEMAS" ${ARGN})
  set(outputs)
  foreach(schema ${ARG_SCHEMAS})
    get_filename_component(abs ${schema} ABSOLUTE)
    get_filename_component(stem ${schema} NAME_WE)
    set(header ${ARG_OUTPUT_DIR}/${stem}_generated.h)
    set(bfbs ${ARG_OUTPUT_DIR}/${stem}.bfbs)
    add_custom_command(
      OUTPUT ${header} ${bfbs}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${ARG_OUTPUT_DIR}
      COMMAND ${FLATC} --cpp --scoped-enums -o ${ARG_OUTPUT_DIR} ${abs}
      COMMAND ${FLATC} --binary --schema --bfbs-comments --bfbs-builtins -o ${ARG_OUTPUT_DIR} ${abs}
      DEPENDS ${abs}
      COMMENT "flatc ${stem}.fbs"
      VERBATIM)
    list(APPEND outputs ${header} ${bfbs})
  endforeach()
  add_custom_target(${target}_gen DEPENDS ${outputs})
  add_library(${target} INTERFACE)
  add_dependencies(${target} ${target}_gen)
  target_include_directories(${target} INTERFACE ${ARG_OUTPUT_DIR})
endfunction()

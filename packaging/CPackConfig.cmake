# Debian packages, one per install component:
#   cr-core                  libcr-core, the cr binary, reflection schemas, man pages, completion
#   cr-handler-<category>-<name>   one per handler (cr_add_handler records them), = cr-core version
#   cr-sdk                   headers, CMake package (find_package(cr)), .fbs schemas
# Build them with `cpack --config <build>/CPackConfig.cmake -B <out>` after building. Shared
# library dependencies come from dpkg-shlibdeps. Configure with -DCMAKE_INSTALL_PREFIX=/usr for
# the Debian multiarch library directory; any prefix packages into /usr.

# Man pages (gzipped, as Debian installs them) and bash completion, in cr-core.
set(CR_MAN_PAGES cr.1 cr-dump.1 cr-restore.1 cr-inspect.1 cr-decode.1 cr-encode.1)
set(CR_MAN_OUTPUTS)
foreach(page ${CR_MAN_PAGES})
  set(out ${CMAKE_BINARY_DIR}/packaging/man/${page}.gz)
  set(src ${CMAKE_BINARY_DIR}/packaging/man/${page})
  configure_file(${CMAKE_CURRENT_SOURCE_DIR}/packaging/man/${page} ${src} @ONLY)
  add_custom_command(OUTPUT ${out}
    COMMAND gzip -9 -n -c ${src} > ${out}
    DEPENDS ${src}
    COMMENT "gzip ${page}" VERBATIM)
  list(APPEND CR_MAN_OUTPUTS ${out})
endforeach()
add_custom_target(cr_man_pages ALL DEPENDS ${CR_MAN_OUTPUTS})
install(FILES ${CR_MAN_OUTPUTS} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT core)
install(FILES packaging/completion/cr.bash DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME cr COMPONENT core)

set(CPACK_PACKAGE_NAME cr)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "the cr project")
set(CPACK_PACKAGE_CONTACT "cr maintainers <cr-maintainers@localhost>")
# CPackDeb puts a summary that differs from this default in front of every package's own
# description; ours starts with its own one-line summary.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libcr-core is found in the build tree while cr-core is made: it is cr-core's own library.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_BINARY_DIR}/lib)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)

# Handler ids recorded by cr_add_handler; test-only handlers are never packaged.
get_property(cr_handlers GLOBAL PROPERTY CR_HANDLERS)
set(cr_components core sdk)
foreach(entry ${cr_handlers})
  string(REPLACE "=" ";" pair "${entry}")
  list(GET pair 0 id)
  list(GET pair 1 component)
  if(id MATCHES "^cr\\.test\\.")
    continue()
  endif()
  list(APPEND cr_components ${component})
  string(TOUPPER ${component} upper)
  set(CPACK_COMPONENT_${upper}_DEPENDS core)
  set(CPACK_COMPONENT_${upper}_DESCRIPTION
      "cr handler ${id}\nThe ${id} handler of cr (checkpoint/restore for Linux process trees),\nloaded by cr dump and cr restore when installed.")
  set(CPACK_DEBIAN_${upper}_PACKAGE_SECTION admin)
endforeach()
set(CPACK_COMPONENTS_ALL ${cr_components})

set(CPACK_COMPONENT_CORE_DESCRIPTION
    "checkpoint/restore for Linux process trees\ncr freezes a running process tree, writes it to an image directory and brings\nit back later. This package holds the cr command, its framework library, the\nreflection schemas of the built-in image sections, man pages and bash\ncompletion. Resources are saved by handlers, each in its own cr-handler-*\npackage.")
set(CPACK_DEBIAN_CORE_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_COMPONENT_SDK_DEPENDS core)
set(CPACK_COMPONENT_SDK_DESCRIPTION
    "SDK to write cr handlers\nHeaders, CMake package (find_package(cr) and cr_add_handler) and FlatBuffers\nschemas to build cr handlers outside the cr source tree.")
set(CPACK_DEBIAN_SDK_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_SDK_PACKAGE_DEPENDS "cmake (>= 3.25), libflatbuffers-dev, flatbuffers-compiler, g++ (>= 4:12)")

include(CPack)

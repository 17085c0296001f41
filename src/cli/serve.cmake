# `tabfit serve` (serve.h): included by src/cli/CMakeLists.txt.
# Defines tabfit_serve (link it into the tabfit executable) and serve_test.
# Debian's libcpp-httplib-dev is a compiled library; its pkg-config file carries
# the CPPHTTPLIB_*_SUPPORT defines that must match the library's ABI.
find_package(PkgConfig REQUIRED)
pkg_check_modules(TABFIT_HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(nlohmann_json 3 REQUIRED)
tabfit_library(tabfit_serve
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/serve.cpp
  DEPS tabfit_core PkgConfig::TABFIT_HTTPLIB nlohmann_json::nlohmann_json)
tabfit_test(serve_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/serve_test.cpp
  DEPS tabfit_serve)
# Link into the CLI when src/cli/CMakeLists.txt includes this after creating
# `tabfit` (serve_cmd.cpp registers the subcommand through the *_cmd.cpp glob).
if(TARGET tabfit)
  target_link_libraries(tabfit PRIVATE tabfit_serve)
endif()

# Shared build settings and helpers for tabfit targets.

set(TABFIT_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare)

if(TABFIT_SANITIZE)
  add_compile_options(-fsanitize=${TABFIT_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${TABFIT_SANITIZE})
endif()

if(TABFIT_BUILD_TESTS)
  enable_testing()
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()

# Where tests find ../shared (real models, golden outputs). Tests skip, saying
# so, when it is absent. TABFIT_SHARED_DIR in the environment overrides it.
get_filename_component(TABFIT_SHARED_DEFAULT "${CMAKE_SOURCE_DIR}/../shared" ABSOLUTE)

# tabfit_library(NAME SOURCES ... DEPS ...): one static library per module.
function(tabfit_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${TABFIT_WARNINGS})
  if(A_DEPS)
    target_link_libraries(${name} PUBLIC ${A_DEPS})
  endif()
endfunction()

# tabfit_test(NAME SOURCES ... DEPS ...): one GoogleTest binary, tests discovered by ctest.
function(tabfit_test name)
  if(NOT TABFIT_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/tests)
  target_compile_definitions(${name} PRIVATE
    TABFIT_SHARED_DIR_DEFAULT="${TABFIT_SHARED_DEFAULT}"
    TABFIT_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    TABFIT_BINARY_DIR="${CMAKE_BINARY_DIR}")
  target_link_libraries(${name} PRIVATE ${A_DEPS} GTest::gtest GTest::gtest_main)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 900)
endfunction()

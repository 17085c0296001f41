# Browser profiles (profile.h): included by src/engine/CMakeLists.txt.
# Defines tabfit_profile (link it into tabfit_engine) and profile_test.
# The built-in profiles (profiles/*.json) are embedded into the binary here, so
# `--profile NAME` works from any working directory; editing a JSON file
# re-runs CMake (CMAKE_CONFIGURE_DEPENDS).
find_package(nlohmann_json 3 REQUIRED)

get_filename_component(TABFIT_PROFILES_DIR "${CMAKE_CURRENT_LIST_DIR}/../../profiles" ABSOLUTE)
set(_tabfit_profile_names chrome edge firefox safari mobile custom)
set(TABFIT_PROFILE_ENTRIES "")
foreach(_n IN LISTS _tabfit_profile_names)
  set(_f "${TABFIT_PROFILES_DIR}/${_n}.json")
  file(READ "${_f}" _json)
  if(_json MATCHES "\\)tfjson\"")
    message(FATAL_ERROR "${_f} contains the raw-string delimiter )tfjson\"")
  endif()
  string(APPEND TABFIT_PROFILE_ENTRIES "    {\"${_n}\", R\"tfjson(${_json})tfjson\"},\n")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_f}")
endforeach()
configure_file("${CMAKE_CURRENT_LIST_DIR}/profile_data.cpp.in"
               "${CMAKE_CURRENT_BINARY_DIR}/profile_data.cpp" @ONLY)

tabfit_library(tabfit_profile
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/profile.cpp ${CMAKE_CURRENT_BINARY_DIR}/profile_data.cpp
  DEPS tabfit_core tabfit_quant nlohmann_json::nlohmann_json)
tabfit_test(profile_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/profile_test.cpp
  DEPS tabfit_profile)
if(TARGET profile_test)
  target_compile_definitions(profile_test PRIVATE TABFIT_PROFILES_DIR="${TABFIT_PROFILES_DIR}")
endif()

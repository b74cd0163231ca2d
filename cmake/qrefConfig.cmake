# qref CMake package config: find_package(qref) gives the header-only target
# qref::headers (include dir with qref/reference.h, qref/requant.h, ...).
#
#   cmake -Dqref_DIR="$(python -c 'import qref; print(qref.get_cmake_dir())')" ...
#   find_package(qref REQUIRED)
#   target_link_libraries(my_test PRIVATE qref::headers)
#
# Works from a wheel install (this file in site-packages/qref/cmake, headers in
# ../include) and from the source tree (this file in <repo>/cmake, headers in
# ../csrc), which is what an editable install uses.
if(TARGET qref::headers)
  return()
endif()

set(_qref_inc "")
foreach(_qref_cand "${CMAKE_CURRENT_LIST_DIR}/../include" "${CMAKE_CURRENT_LIST_DIR}/../csrc")
  if(EXISTS "${_qref_cand}/qref/requant.h")
    get_filename_component(_qref_inc "${_qref_cand}" ABSOLUTE)
    break()
  endif()
endforeach()

if(NOT _qref_inc)
  set(qref_FOUND FALSE)
  set(qref_NOT_FOUND_MESSAGE "qref headers not found next to ${CMAKE_CURRENT_LIST_FILE}")
  return()
endif()

set(qref_INCLUDE_DIR "${_qref_inc}")
set(qref_INCLUDE_DIRS "${_qref_inc}")
add_library(qref::headers INTERFACE IMPORTED)
set_target_properties(qref::headers PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_qref_inc}")
# The reference's float32 arithmetic is one IEEE operation at a time, as
# fbgemm's: C++17, and no contraction of a*b+c into FMA in code that includes it.
target_compile_features(qref::headers INTERFACE cxx_std_17)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(qref::headers INTERFACE -ffp-contract=off)
endif()
set(qref_FOUND TRUE)
unset(_qref_inc)
unset(_qref_cand)

# ctest: libnsajit.so must export exactly the functions nsajit.h declares (all
# named nsajit_*), and depend on no shared library beyond the C runtime
# (LLVM/MLIR, libstdc++, zlib, fmt are linked in and hidden).
#   cmake -DLIB=libnsajit.so -DNM=nm -DREADELF=readelf -DHEADER=nsajit.h -P check_exports.cmake
cmake_minimum_required(VERSION 3.20)
foreach(var LIB NM READELF HEADER)
  if(NOT ${var})
    message(FATAL_ERROR "check_exports.cmake: -D${var}= is required")
  endif()
endforeach()

execute_process(COMMAND ${NM} -D --defined-only ${LIB}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -D --defined-only ${LIB} failed: ${err}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(exported "")
set(bad "")
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-fA-F]* *[A-Za-z] +([^ ]+)$")
    set(sym "${CMAKE_MATCH_1}")
    list(APPEND exported "${sym}")
    if(NOT sym MATCHES "^nsajit_[a-z0-9_]+$")
      list(APPEND bad "${sym}")
    endif()
  endif()
endforeach()
list(LENGTH exported count)
if(bad)
  list(LENGTH bad nbad)
  list(SUBLIST bad 0 20 first)
  message(FATAL_ERROR "libnsajit.so exports ${nbad} symbols not named nsajit_*, e.g.: ${first}")
endif()

# Every function the header declares is exported.
file(READ ${HEADER} header)
string(REGEX MATCHALL "NSAJIT_API [^;(]*[ *](nsajit_[a-z0-9_]+)\\(" decls "${header}")
set(missing "")
set(declared 0)
set(declared_names "")
foreach(decl IN LISTS decls)
  string(REGEX MATCH "(nsajit_[a-z0-9_]+)\\($" name "${decl}")
  string(REGEX REPLACE "\\($" "" name "${name}")
  math(EXPR declared "${declared} + 1")
  list(APPEND declared_names ${name})
  if(NOT name IN_LIST exported)
    list(APPEND missing ${name})
  endif()
endforeach()

# The API by name: a function lost from the header or the library fails here
# (extend the list when nsajit.h grows; functions are never removed from ABI 1).
set(api
  nsajit_last_error nsajit_status_string nsajit_version nsajit_compiler_version nsajit_abi_version
  nsajit_set_log_callback nsajit_config_init
  nsajit_context_create nsajit_context_destroy nsajit_context_set_arch nsajit_context_set_backward_split nsajit_context_set_selection_map_limit nsajit_device_info
  nsajit_compressed_forward nsajit_selected_forward nsajit_window_forward
  nsajit_compressed_backward nsajit_selected_backward nsajit_window_backward nsajit_select_topn nsajit_compress_forward nsajit_compress_backward nsajit_gated_combine
  nsajit_check_indices
  nsajit_compile nsajit_compile_ptx nsajit_kernel_query
  nsajit_compile2 nsajit_compile_ptx2 nsajit_kernel_query2
  nsajit_cache_stats nsajit_cache_info)
foreach(name IN LISTS api)
  if(NOT name IN_LIST declared_names)
    message(FATAL_ERROR "nsajit.h no longer declares ${name} (NSAJIT_API): the ABI lost a function")
  endif()
  if(NOT name IN_LIST exported)
    list(APPEND missing ${name})
  endif()
endforeach()
list(REMOVE_DUPLICATES missing)
if(declared LESS 10)
  message(FATAL_ERROR "found only ${declared} NSAJIT_API declarations in ${HEADER}: the check is broken")
endif()
if(missing)
  message(FATAL_ERROR "libnsajit.so does not export: ${missing}")
endif()
if(NOT count EQUAL declared)
  message(FATAL_ERROR "libnsajit.so exports ${count} symbols but nsajit.h declares ${declared}: ${exported}")
endif()

# Only the C runtime as shared dependencies.
execute_process(COMMAND ${READELF} -d ${LIB} OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${READELF} -d ${LIB} failed")
endif()
string(REGEX MATCHALL "Shared library: \\[[^]]+\\]" needed "${dyn}")
foreach(n IN LISTS needed)
  string(REGEX REPLACE "Shared library: \\[([^]]+)\\]" "\\1" lib "${n}")
  if(NOT lib MATCHES "^(libc|libm|libdl|libpthread|librt|ld-linux-x86-64|ld-linux-aarch64)\\.so")
    message(FATAL_ERROR "libnsajit.so needs ${lib}: it must be self-contained (only the C runtime)")
  endif()
endforeach()
message(STATUS "libnsajit.so exports the ${count} nsajit_* functions of nsajit.h; needs only: ${needed}")

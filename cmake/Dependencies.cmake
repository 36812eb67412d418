# All third-party dependencies, from Debian packages (scripts/install-deps.sh installs them).
find_package(Threads REQUIRED)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(Boost 1.74 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(fmt 9 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(GTest REQUIRED)
find_package(rapidcheck REQUIRED)
find_package(ZLIB REQUIRED)

# DPLR_STATIC_DEPS links MPFR, GMP and QD statically, so a binary built here runs on the device
# machine, which has none of them.
option(DPLR_STATIC_DEPS "Link MPFR, GMP and QD statically" OFF)
set(_dplr_suffix "")
if(DPLR_STATIC_DEPS)
  set(_dplr_suffix ".a")
endif()
foreach(_lib mpfr gmp qd)
  string(TOUPPER ${_lib} _LIB)
  find_library(${_LIB}_LIBRARY NAMES lib${_lib}${_dplr_suffix} ${_lib} REQUIRED)
  find_path(${_LIB}_INCLUDE_DIR NAMES ${_lib}.h qd/dd_real.h REQUIRED)
endforeach()
add_library(dplr_multiprecision INTERFACE)
target_include_directories(dplr_multiprecision INTERFACE ${MPFR_INCLUDE_DIR} ${QD_INCLUDE_DIR})
# Order matters for static archives: MPFR needs GMP.
target_link_libraries(dplr_multiprecision INTERFACE ${QD_LIBRARY} ${MPFR_LIBRARY} ${GMP_LIBRARY}
                      Eigen3::Eigen Boost::headers)

# MPFR, GMP and QD ship no CMake package on Debian: found by name as the imported targets dplr::mpfr,
# dplr::gmp and dplr::qd. Used by Dependencies.cmake and by the installed package config, so a project
# that calls find_package(dplr_verify) links the same libraries. DPLR_STATIC_DEPS picks the .a archives.
foreach(_dplr_lib mpfr gmp qd)
  if(NOT TARGET dplr::${_dplr_lib})
    string(TOUPPER ${_dplr_lib} _DPLR_LIB)
    set(_dplr_names ${_dplr_lib})
    if(DPLR_STATIC_DEPS)
      set(_dplr_names lib${_dplr_lib}.a ${_dplr_lib})
    endif()
    find_library(${_DPLR_LIB}_LIBRARY NAMES ${_dplr_names} REQUIRED)
    find_path(${_DPLR_LIB}_INCLUDE_DIR NAMES ${_dplr_lib}.h qd/dd_real.h REQUIRED)
    add_library(dplr::${_dplr_lib} UNKNOWN IMPORTED)
    set_target_properties(dplr::${_dplr_lib} PROPERTIES IMPORTED_LOCATION "${${_DPLR_LIB}_LIBRARY}"
                          INTERFACE_INCLUDE_DIRECTORIES "${${_DPLR_LIB}_INCLUDE_DIR}")
  endif()
endforeach()
# Order matters for static archives: MPFR needs GMP.
set_property(TARGET dplr::mpfr APPEND PROPERTY INTERFACE_LINK_LIBRARIES dplr::gmp)

# Arb (FLINT's ball arithmetic, Debian libflint-arb-dev) is optional: it is the rigorous mode (--rigorous,
# reference/ball.hpp). Found as dplr::arb where present; never with DPLR_STATIC_DEPS, since Debian ships no
# static libflint-arb, so the device build leaves the rigorous mode out (dplr then refuses it, saying why).
# DPLR_WITH_ARB=OFF builds without it even where it is installed (to test that build).
option(DPLR_WITH_ARB "Build the rigorous mode (Arb ball arithmetic) where Arb is found" ON)
if(DPLR_WITH_ARB AND NOT TARGET dplr::arb AND NOT DPLR_STATIC_DEPS)
  find_library(ARB_LIBRARY NAMES flint-arb arb)
  find_library(FLINT_LIBRARY NAMES flint)
  find_path(ARB_INCLUDE_DIR NAMES arb.h PATH_SUFFIXES flint)
  if(ARB_LIBRARY AND FLINT_LIBRARY AND ARB_INCLUDE_DIR)
    add_library(dplr::arb UNKNOWN IMPORTED)
    set_target_properties(dplr::arb PROPERTIES IMPORTED_LOCATION "${ARB_LIBRARY}"
                          INTERFACE_INCLUDE_DIRECTORIES "${ARB_INCLUDE_DIR}"
                          INTERFACE_LINK_LIBRARIES "${FLINT_LIBRARY};dplr::mpfr")
  endif()
endif()

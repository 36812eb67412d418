# The installable C++ package: `cmake --install build --prefix P` puts the libraries, their headers (under
# include/dplr_verify/, included as "reference/reference.hpp" ...) and the `dplr` binary under P, with a
# package config, so a project's CMake can say
#   find_package(dplr_verify CONFIG REQUIRED)
#   target_link_libraries(my_test PRIVATE dplr::reference dplr::verify_case dplr::io)
# Targets (namespace dplr::): core, io, reference, generators, verify (metrics, tolerance, compare),
# reports (JSON, table, JUnit), verify_case (a case judged as `dplr verify` does), multiprecision.
# tests/package/ is a consumer configured against an installed tree (scripts/test-package.sh).
set(_dplr_exported core io reference generators verify reports verify_case)
foreach(_dplr_name ${_dplr_exported} multiprecision)
  if(TARGET dplr_${_dplr_name})
    add_library(dplr::${_dplr_name} ALIAS dplr_${_dplr_name})
    set_target_properties(dplr_${_dplr_name} PROPERTIES EXPORT_NAME ${_dplr_name})
    # The headers are C++20; a consumer gets the standard with the target.
    get_target_property(_dplr_type dplr_${_dplr_name} TYPE)
    if(_dplr_type STREQUAL "INTERFACE_LIBRARY")
      target_compile_features(dplr_${_dplr_name} INTERFACE cxx_std_20)
    else()
      target_compile_features(dplr_${_dplr_name} PUBLIC cxx_std_20)
    endif()
  endif()
endforeach()

option(DPLR_INSTALL "Generate install rules and the CMake package config" ${PROJECT_IS_TOP_LEVEL})
if(NOT DPLR_INSTALL)
  return()
endif()
foreach(_dplr_name ${_dplr_exported})
  if(NOT TARGET dplr_${_dplr_name})
    message(STATUS "dplr: no install rules (DPLR_SKIP_PARTS leaves out a part the package needs)")
    return()
  endif()
endforeach()

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(DPLR_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/dplr_verify)
set(DPLR_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/dplr_verify)

set(_dplr_targets dplr_multiprecision)
foreach(_dplr_name ${_dplr_exported})
  list(APPEND _dplr_targets dplr_${_dplr_name})
endforeach()
install(TARGETS ${_dplr_targets} EXPORT dplr_verifyTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${DPLR_INSTALL_INCLUDEDIR})
if(TARGET dplr)
  install(TARGETS dplr RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
# The headers of the exported libraries; not the sweep's and GPU runner's (their library is not exported)
# nor the RapidCheck generators (they need RapidCheck).
foreach(_dplr_dir core io reference generators verify reports)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${_dplr_dir}/ DESTINATION ${DPLR_INSTALL_INCLUDEDIR}/${_dplr_dir}
          FILES_MATCHING PATTERN "*.hpp"
          PATTERN "sweep.hpp" EXCLUDE PATTERN "gpu_runner.hpp" EXCLUDE PATTERN "rapidcheck.hpp" EXCLUDE
          PATTERN "property_sweep.hpp" EXCLUDE PATTERN "shard.hpp" EXCLUDE PATTERN "case_file.hpp" EXCLUDE)
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/reports/schema/dplr-report.v2.schema.json
        DESTINATION ${CMAKE_INSTALL_DATADIR}/dplr_verify)

install(EXPORT dplr_verifyTargets NAMESPACE dplr:: DESTINATION ${DPLR_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dplr_verifyConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/dplr_verifyConfig.cmake
                              INSTALL_DESTINATION ${DPLR_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dplr_verifyConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dplr_verifyConfig.cmake ${PROJECT_BINARY_DIR}/dplr_verifyConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/MultiprecisionLibraries.cmake
        DESTINATION ${DPLR_INSTALL_CMAKEDIR})

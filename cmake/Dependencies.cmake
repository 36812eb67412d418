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
include(${CMAKE_CURRENT_LIST_DIR}/MultiprecisionLibraries.cmake)
add_library(dplr_multiprecision INTERFACE)
target_link_libraries(dplr_multiprecision INTERFACE dplr::qd dplr::mpfr Eigen3::Eigen Boost::headers)

# ctest package.consumer: install DPLR_BUILD_DIR to WORK_DIR/install, then configure, build and test the
# consumer project (CONSUMER_SOURCE_DIR) against that tree alone.
set(prefix ${WORK_DIR}/install)
file(REMOVE_RECURSE ${prefix} ${WORK_DIR}/consumer)
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "package.consumer: '${ARGN}' failed (${result})")
  endif()
endfunction()
step(${CMAKE_COMMAND} --install ${DPLR_BUILD_DIR} --prefix ${prefix})
set(launcher "")
if(CXX_COMPILER_LAUNCHER)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_COMPILER_LAUNCHER})
endif()
step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/consumer -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release
     -DCMAKE_PREFIX_PATH=${prefix} ${launcher})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
step(${CMAKE_CTEST_COMMAND} --test-dir ${WORK_DIR}/consumer --output-on-failure)

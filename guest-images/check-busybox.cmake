# Build-time check (cmake -DBUSYBOX=PATH -P check-busybox.cmake): the initramfs needs a
# static busybox, because nothing else (no libc, no loader) is in it.
if(NOT EXISTS "${BUSYBOX}")
  message(FATAL_ERROR "guest initramfs: ${BUSYBOX} not found: apt-get install busybox-static")
endif()
execute_process(COMMAND readelf -l "${BUSYBOX}" OUTPUT_VARIABLE _phdrs RESULT_VARIABLE _rc ERROR_QUIET)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "guest initramfs: ${BUSYBOX} is not an ELF executable: apt-get install busybox-static")
endif()
if(_phdrs MATCHES "INTERP")
  message(FATAL_ERROR "guest initramfs: ${BUSYBOX} is dynamically linked; the initramfs needs a static one: apt-get install busybox-static")
endif()

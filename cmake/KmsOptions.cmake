# Compiler settings shared by every target: warnings, -Werror in CI, sanitizers, ccache.
find_program(KMS_CCACHE ccache)
if(KMS_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${KMS_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${KMS_CCACHE})
endif()

add_library(kms_warnings INTERFACE)
target_compile_options(kms_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wformat=2
  -Wimplicit-fallthrough)
if(KMS_WERROR)
  target_compile_options(kms_warnings INTERFACE -Werror)
endif()

if(KMS_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# kms_component(NAME SOURCES...) : one static library per component with a public
# include directory and a private source directory.
function(kms_component name)
  add_library(${name} STATIC ${ARGN})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                     PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${name} PRIVATE kms_warnings)
endfunction()

# Hardening, as Debian's dpkg-buildflags would give a package (the .debs are made from the
# Release tree): stack protector, full RELRO with immediate binding, and _FORTIFY_SOURCE where
# the optimiser makes it work. Not with the sanitizers, which bring their own checks.
if(NOT KMS_SANITIZE)
  add_compile_options(-fstack-protector-strong -fstack-clash-protection
                      "$<$<CONFIG:Release,RelWithDebInfo,MinSizeRel>:-D_FORTIFY_SOURCE=2>")
  add_link_options(-Wl,-z,relro -Wl,-z,now)
endif()

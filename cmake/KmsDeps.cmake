# Third-party dependencies, all from Debian packages (deploy/install-deps.sh).
find_package(OpenSSL 3.0 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(tl-expected REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(tomlplusplus 3 REQUIRED)
pkg_check_modules(P11KIT REQUIRED IMPORTED_TARGET p11-kit-1)
find_library(KMS_SOFTHSM2_MODULE NAMES softhsm2
             PATHS /usr/lib/softhsm /usr/lib/x86_64-linux-gnu/softhsm NO_DEFAULT_PATH)
if(NOT KMS_SOFTHSM2_MODULE)
  set(KMS_SOFTHSM2_MODULE /usr/lib/softhsm/libsofthsm2.so)
endif()

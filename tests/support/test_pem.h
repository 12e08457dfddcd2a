#pragma once
/// @file A self-signed P-256 certificate (CN=kms config test root, valid until 2126) for
/// fixtures that need a PEM file kmsd's config check parses; never used to verify anything.
/// Made with: openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
///   -subj "/CN=kms config test root" -days 36500

namespace kms::test {

inline constexpr const char* kTestRootPem = R"(-----BEGIN CERTIFICATE-----
MIIBlDCCATugAwIBAgIUevV1jrbEre10YVuHjxwXjVSy74kwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUa21zIGNvbmZpZyB0ZXN0IHJvb3QwIBcNMjYxMjA0MTkzNDAz
WhgPMjEyNjExMTAxOTM0MDNaMB8xHTAbBgNVBAMMFGttcyBjb25maWcgdGVzdCBy
b290MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPNtWc5ciMArsum2DjAeGm2FP
BXxf+GKf8eQXJQB+n8ptMqfTuUFDyCgG/z3VRo80LEN/pVHzYt/td3hc6OHGEqNT
MFEwHQYDVR0OBBYEFJ2qblJUzOWxFXSyiESbKMQeKpVnMB8GA1UdIwQYMBaAFJ2q
blJUzOWxFXSyiESbKMQeKpVnMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
RwAwRAIgBA/RTAPC1+MG2o47zUvCgaYw9NLKsskNGBM6vtp95HQCIHFENVZNdyeU
BrGKea74sOfU6PI20paP5bxGSJSpiYBU
-----END CERTIFICATE-----
)";

}  // namespace kms::test

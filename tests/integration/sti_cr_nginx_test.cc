// The STI-CR as verifiers see it: Debian's nginx serving kmsd's web root through the shipped
// rules (deploy/nginx/sti-cr-locations.conf); kmsd checks its publication through it, and
// curl, as a verifier would, gets the chain with the right type and caching header.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "cli.h"
#include "lab_process.h"
#include "nginx_server.h"
#include "sandbox.h"

namespace kms {
namespace {

using test::CmdResult;
using test::kKmsd;

struct Fetched {
  int status = 0;
  std::string headers;  ///< lower-cased
  std::string body;
};

/// curl as a verifier would run it.
Fetched curlGet(const test::Sandbox& sb, const std::string& url, const std::string& method = "GET") {
  const std::string body = sb.file("curl.body");
  const std::string headers = sb.file("curl.headers");
  std::string code;
  test::runCommand("curl -s -X " + method + " -o '" + body + "' -D '" + headers + "' -w '%{http_code}' '" + url + "'",
                   &code);
  Fetched f;
  f.status = std::atoi(code.c_str());
  f.headers = test::readFile(headers);
  for (char& c : f.headers) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  f.body = test::readFile(body);
  return f;
}

TEST(StiCrNginx, KmsdPublishesAndChecksThroughNginxAndVerifiersGetTheChain) {
  test::Sandbox sb;
  test::LabProcess lab(sb.file("lab"));
  test::NginxServer nginx(sb.file("nginx"), lab.file("www"), KMS_SOURCE_DIR "/deploy/nginx/sti-cr-locations.conf");
  // The x5u URLs are nginx's, and kmsd fetches each one back through it before activation.
  std::string text = test::readFile(lab.file("kmsd.toml"));
  const std::string from = "base_url = \"" + lab.baseUrl() + "/sti-cr/\"";
  auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, from.size(), "base_url = \"" + nginx.baseUrl() + "\"");
  const std::string config = sb.write("kmsd.toml", text);

  CmdResult r = test::runTool("SOFTHSM2_CONF=" + lab.file("softhsm2.conf"), kKmsd, config, "--once");
  ASSERT_EQ(r.rc, 0) << r.output << nginx.errorLog();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("published (http://127\\.0\\.0\\.1:[0-9]+/main/([0-9A-F]+)\\.pem)")))
      << r.output;
  const std::string x5u = m[1];
  const std::string serial = m[2];
  // kmsd's own check went through nginx.
  EXPECT_NE(test::readFile(sb.file("nginx/access.log")).find("\"GET /main/" + serial + ".pem HTTP/1.1\" 200"),
            std::string::npos)
      << test::readFile(sb.file("nginx/access.log"));

  Fetched chain = curlGet(sb, x5u);
  EXPECT_EQ(chain.status, 200);
  EXPECT_NE(chain.headers.find("content-type: application/pem-certificate-chain\r\n"), std::string::npos)
      << chain.headers;
  EXPECT_NE(chain.headers.find("cache-control: public, max-age=86400\r\n"), std::string::npos) << chain.headers;
  EXPECT_EQ(chain.body, test::readFile(lab.file("www/main/" + serial + ".pem")));
  EXPECT_NE(chain.body.find("-----BEGIN CERTIFICATE-----"), std::string::npos);
  Fetched current = curlGet(sb, nginx.baseUrl() + "main.pem");
  EXPECT_EQ(current.status, 200);
  EXPECT_EQ(current.body, chain.body);

  // Nothing else: no listing, no other files, no other methods.
  EXPECT_EQ(curlGet(sb, nginx.baseUrl()).status, 404);
  EXPECT_EQ(curlGet(sb, nginx.baseUrl() + "main/").status, 404);
  sb.write("lab/www/notes.txt", "not a chain\n");
  EXPECT_EQ(curlGet(sb, nginx.baseUrl() + "notes.txt").status, 404);
  EXPECT_EQ(curlGet(sb, x5u, "POST").status, 403);
  EXPECT_EQ(curlGet(sb, nginx.baseUrl() + "main/NOSUCH.pem").status, 404);
}

}  // namespace
}  // namespace kms

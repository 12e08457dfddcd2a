// kms-lab: a local STI-PA + ACME STI-CA (tkauth-01) + STI-CR web root on 127.0.0.1,
// for testing kmsd end to end. See tests/lab/README.md.

#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "acme_service.h"
#include "https_server.h"
#include "lab_files.h"
#include "sti_pa_service.h"
#include "util.h"

namespace {

using namespace kms::lab;
namespace fs = std::filesystem;

int die(const std::string& what) {
  std::cerr << "kms-lab: " << what << "\n";
  return 1;
}

/// Serves D/www under /sti-cr/ (the [publisher] web root of the generated kmsd.toml).
LabReply stiCr(const LabContext& ctx, const LabRequest& request) {
  if (request.method != "GET" && request.method != "HEAD") {
    return LabReply::bytes(405, "method not allowed\n", "text/plain");
  }
  if (ctx.options.failStiCr) {
    return LabReply::bytes(503, "STI-CR unavailable (--fail-sti-cr)\n", "text/plain");
  }
  std::string rel = request.path.substr(std::string("/sti-cr/").size());
  fs::path p = fs::path(rel).lexically_normal();
  if (rel.empty() || p.is_absolute() || p.string().starts_with("..") || rel.find("/../") != std::string::npos) {
    return LabReply::bytes(404, "not found\n", "text/plain");
  }
  auto body = readFile(ctx.options.dir + "/www/" + p.string());
  std::error_code ec;
  if (!body || fs::is_directory(ctx.options.dir + "/www/" + p.string(), ec)) {
    return LabReply::bytes(404, "not found\n", "text/plain");
  }
  return LabReply::bytes(200, *body, "application/pem-certificate-chain")
      .with("Cache-Control", "public, max-age=86400");
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parseOptions(argc, argv);
  if (parsed.exitCode >= 0) {
    return parsed.exitCode;
  }
  LabContext ctx;
  ctx.options = parsed.options;
  const std::string& dir = ctx.options.dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return die("cannot create " + dir + ": " + ec.message());
  }

  auto pki = LabPki::loadOrCreate(dir);
  if (!pki) {
    return die(pki.error().toString());
  }
  ctx.pki = std::move(*pki);
  auto store = CaStore::open(dir + "/ca-state.json");
  if (!store) {
    return die(store.error().toString());
  }
  ctx.store = std::move(*store);
  auto secrets = ensureSecrets(dir);
  if (!secrets) {
    return die(secrets.error().toString());
  }
  ctx.stiPaPassword = secrets->stiPaPassword;
  if (auto t = StiPaService::loadTrustState(ctx); !t) {
    return die(t.error().toString());
  }
  ctx.eabKey = secrets->eabKey;

  std::uint16_t port = ctx.options.port;
  bool reused = false;
  if (!ctx.options.portGiven) {
    if (auto previous = previousPort(dir)) {
      port = *previous;
      reused = true;
    }
  }

  StiPaService stiPa(ctx);
  AcmeService acme(ctx);
  std::mutex mutex;
  auto handler = [&](const LabRequest& request) -> LabReply {
    if (ctx.options.slowMs > 0) {
      // Said before the wait, so a test knows a request is in flight without guessing when.
      std::cerr << "kms-lab: holding " << request.method << " " << request.path << " for " << ctx.options.slowMs
                << " ms" << std::endl;
      std::this_thread::sleep_for(std::chrono::milliseconds(ctx.options.slowMs));
    }
    if (ctx.hostile.acmeHold && request.path.starts_with("/acme/")) {
      std::cerr << "kms-lab: holding " << request.method << " " << request.path << " until released" << std::endl;
      while (ctx.hostile.acmeHold) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    if (ctx.options.stiCrDelayMs > 0 && request.path.starts_with("/sti-cr/")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(ctx.options.stiCrDelayMs));
    }
    LabReply reply;
    {
      std::lock_guard lock(mutex);
      if (request.path.starts_with("/sti-pa/")) {
        reply = stiPa.handle(request);
      } else if (request.path.starts_with("/acme/")) {
        reply = acme.handle(request);
      } else if (request.path.starts_with("/lab/")) {
        reply = stiPa.admin(request);
      } else if (request.path.starts_with("/sti-cr/")) {
        reply = stiCr(ctx, request);
      } else {
        reply = LabReply::bytes(404, "not found\n", "text/plain");
      }
    }
    std::cerr << "kms-lab: " << request.method << " " << request.path << " -> " << reply.status << "\n";
    if (ctx.options.record && request.method == "POST" && !request.path.ends_with("/auth/login") &&
        (request.path.starts_with("/acme/") || request.path.starts_with("/sti-pa/"))) {
      std::lock_guard lock(mutex);
      std::ofstream(dir + "/requests.jsonl", std::ios::app)
          << nlohmann::json{{"path", request.path}, {"body", request.body}}.dump() << "\n";
    }
    if (ctx.options.record && reply.status == 200 && request.path.starts_with("/sti-pa/api/")) {
      // What the STI-PA handed out that kmsd must never show: the no-secret test greps for it.
      auto j = nlohmann::json::parse(reply.body, nullptr, false);
      std::lock_guard lock(mutex);
      std::ofstream issued(dir + "/issued-secrets.txt", std::ios::app);
      for (const char* key : {"accessToken", "refreshToken", "token"}) {
        if (j.is_object() && j.contains(key) && j[key].is_string()) {
          issued << j[key].get<std::string>() << "\n";
        }
      }
    }
    return reply;
  };

  // TLS chain file: the leaf then its CA (clients trust the CA via tls-ca.pem).
  std::string chainFile = dir + "/pki/tls-chain.pem";
  if (auto w = writeFileAtomic(chainFile, ctx.pki->tls->cert.pem() + ctx.pki->tlsCa->cert.pem()); !w) {
    return die(w.error().toString());
  }
  auto server = HttpsServer::create(chainFile, dir + "/pki/tls.key", port, handler);
  if (!server) {
    if (reused) {
      return die(server.error().toString() + " (port " + std::to_string(port) + " recorded in " + dir +
                 "/lab.json is taken; pass --port to choose another, which rewrites the "
                 "generated files)");
    }
    return die(server.error().toString());
  }
  ctx.baseUrl = "https://127.0.0.1:" + std::to_string((*server)->port());

  if (auto w = writeClientFiles(ctx); !w) {
    return die(w.error().toString());
  }
  if (auto hsm = ensureSoftHsmToken(dir); !hsm) {
    return die(hsm.error().toString());
  }
  std::cerr << "kms-lab: switches " << ctx.options.toJson().dump() << "\n";
  std::cout << "kms-lab listening on " << ctx.baseUrl << std::endl;
  (*server)->run();
  return 0;
}

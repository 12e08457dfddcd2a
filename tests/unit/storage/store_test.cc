// Store round trips and the schema's constraints.

#include <gtest/gtest.h>

#include <set>

#include "sandbox.h"
#include "storage/db.h"
#include "storage/store.h"
#include "storage_test_util.h"

namespace kms::storage {
namespace {

constexpr std::int64_t kT0 = 1700000000;
constexpr const char* kPem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

class StorageStore : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Db::open(sandbox_.file("kmsd.db"));
    ASSERT_TRUE(db.has_value()) << db.error().toString();
    db_ = std::move(db.value());
    store_ = makeSqliteStore(*db_, [this] { return now_; });
  }

  std::string recordKey(const std::string& id, KeyPurpose purpose = KeyPurpose::certificate) {
    HsmKey key;
    key.keyUri = "pkcs11:token=kms;id=%" + id;
    key.ckaIdHex = id;
    key.label = "key-" + id;
    key.purpose = purpose;
    auto r = store_->recordKey(key);
    EXPECT_TRUE(r.has_value()) << r.error().toString();
    return key.keyUri;
  }

  void addCert(const std::string& name) {
    auto r = store_->upsertCertificate(name, CertKind::shaken, R"(["spc:1234"])");
    ASSERT_TRUE(r.has_value()) << r.error().toString();
  }

  IssuedCert issued(const std::string& name, const std::string& serial, std::int64_t notBefore, std::int64_t notAfter,
                    const std::string& keyUri) {
    IssuedCert c;
    c.certName = name;
    c.serial = serial;
    c.notBefore = notBefore;
    c.notAfter = notAfter;
    c.chainPem = kPem;
    c.keyUri = keyUri;
    return c;
  }

  test::Sandbox sandbox_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<Store> store_;
  std::int64_t now_ = kT0;
};

TEST_F(StorageStore, CertificateUpsertGetList) {
  auto created = store_->upsertCertificate("main", CertKind::shaken, R"(["spc:1234"])");
  KMS_ASSERT_OK(created);
  EXPECT_GT(created->id, 0);
  EXPECT_EQ(created->name, "main");
  EXPECT_EQ(created->kind, CertKind::shaken);
  EXPECT_EQ(created->state, CertState::planned);
  EXPECT_EQ(created->failureCount, 0);
  EXPECT_FALSE(created->nextAttemptAt.has_value());
  EXPECT_EQ(created->createdAt, kT0);
  EXPECT_EQ(created->updatedAt, kT0);

  KMS_ASSERT_OK(store_->setState("main", CertState::keyReady, kT0 + 60));
  now_ = kT0 + 10;
  auto same = store_->upsertCertificate("main", CertKind::shaken, R"(["spc:1234"])");
  KMS_ASSERT_OK(same);
  EXPECT_EQ(same->updatedAt, kT0);  // nothing changed, nothing written
  auto updated = store_->upsertCertificate("main", CertKind::acme, R"(["dns:cr.example.net"])");
  KMS_ASSERT_OK(updated);
  EXPECT_EQ(updated->id, created->id);
  EXPECT_EQ(updated->kind, CertKind::acme);
  EXPECT_EQ(updated->identifiersJson, R"(["dns:cr.example.net"])");
  EXPECT_EQ(updated->state, CertState::keyReady);  // kept
  EXPECT_EQ(updated->createdAt, kT0);
  EXPECT_EQ(updated->updatedAt, kT0 + 10);

  addCert("alpha");
  auto all = store_->listCertificates();
  KMS_ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(all->at(0).name, "alpha");
  EXPECT_EQ(all->at(1).name, "main");

  auto missing = store_->getCertificate("nope");
  KMS_ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());
}

TEST_F(StorageStore, CertificateChecksRejectMistakes) {
  auto badJson = store_->upsertCertificate("x", CertKind::shaken, "spc:1234");
  ASSERT_FALSE(badJson.has_value());
  EXPECT_EQ(badJson.error().nativeName, "SQLITE_CONSTRAINT_CHECK");
  auto notArray = store_->upsertCertificate("x", CertKind::shaken, R"({"spc":"1234"})");
  ASSERT_FALSE(notArray.has_value());
  auto emptyName = store_->upsertCertificate("", CertKind::shaken, "[]");
  ASSERT_FALSE(emptyName.has_value());
  EXPECT_EQ(emptyName.error().nativeName, "SQLITE_CONSTRAINT_CHECK");
  auto badState = db_->exec("UPDATE managed_certificates SET state = 'bogus'");
  KMS_EXPECT_OK(badState);  // no rows yet
  addCert("main");
  badState = db_->exec("UPDATE managed_certificates SET state = 'bogus'");
  ASSERT_FALSE(badState.has_value());
  EXPECT_EQ(badState.error().nativeName, "SQLITE_CONSTRAINT_CHECK");
  auto badType = db_->exec("UPDATE managed_certificates SET next_attempt_at = 'soon'");
  ASSERT_FALSE(badType.has_value());  // STRICT tables refuse text in an INTEGER column
}

TEST_F(StorageStore, RetirableKeysAreOnlyThoseNothingNeedsAnyMore) {
  // Destroying a key cannot be undone: each case a key must survive, and the boundary of
  // [publisher] retain to the second.
  addCert("main");
  const std::int64_t retain = 3600;
  int serial = 0;
  auto issue = [&](const std::string& keyUri, std::int64_t notBefore, std::int64_t notAfter,
                   std::optional<std::int64_t> publishedAt) {
    IssuedCert c;
    c.certName = "main";
    c.serial = "0" + std::to_string(++serial);
    c.notBefore = notBefore;
    c.notAfter = notAfter;
    c.chainPem = kPem;
    c.keyUri = keyUri;
    auto id = store_->insertIssued(c);
    EXPECT_TRUE(id.has_value()) << id.error().toString();
    if (publishedAt) {
      EXPECT_TRUE(store_->markPublished(*id, "https://cr.example/x.pem", *publishedAt).has_value());
    }
    return *id;
  };
  auto retirable = [&](std::int64_t now) {
    std::set<std::string> out;
    auto keys = store_->listRetirableKeys(now, retain);
    EXPECT_TRUE(keys.has_value()) << keys.error().toString();
    for (const auto& [uri, cert] : *keys) {
      out.insert(uri);
    }
    return out;
  };
  const std::string account = recordKey("a0", KeyPurpose::account);
  const std::string old = recordKey("01");
  const std::string current = recordKey("02");
  const std::string inOrder = recordKey("03");
  const std::string revoked = recordKey("04");
  const std::string expired = recordKey("05");
  issue(old, kT0, kT0 + 90 * 86400, kT0);                      // replaced at kT0 + 100
  issue(current, kT0 + 50, kT0 + 90 * 86400, kT0 + 100);       // the active one
  const auto revokedId = issue(revoked, kT0 + 10, kT0 + 90 * 86400, std::nullopt);
  KMS_ASSERT_OK(store_->markRevoked(revokedId, kT0 + 20));
  issue(expired, kT0 - 100 * 86400, kT0 - 10 * 86400, kT0 - 100 * 86400);
  auto order = store_->createOrder("main", CertState::planned);
  KMS_ASSERT_OK(order);
  OrderUpdate u;
  u.step = CertState::keyReady;
  u.keyUri = inOrder;
  KMS_ASSERT_OK(store_->advanceOrder(order->id, u));

  // A second before the replaced key's retain ends it stays; at the second it ends it goes.
  const std::int64_t replacedAt = kT0 + 100;
  EXPECT_EQ(retirable(replacedAt + retain - 1), (std::set<std::string>{revoked, expired}));
  EXPECT_EQ(retirable(replacedAt + retain), (std::set<std::string>{old, revoked, expired}));
  // Never: the account key, the active certificate's, an open order's.
  for (std::int64_t now : {kT0, replacedAt + retain, kT0 + 80 * 86400}) {
    auto keys = retirable(now);
    EXPECT_EQ(keys.count(account), 0u) << now;
    EXPECT_EQ(keys.count(current), 0u) << now;
    EXPECT_EQ(keys.count(inOrder), 0u) << now;
  }
  // The open order closes (abandoned): its key goes with it.
  KMS_ASSERT_OK(store_->closeOrder(order->id, OrderStatus::abandoned));
  EXPECT_EQ(retirable(kT0).count(inOrder), 1u);
  // The active certificate expires: its key goes too (nothing valid uses it).
  EXPECT_EQ(retirable(kT0 + 90 * 86400).count(current), 1u);
  // A destroyed key is not listed again.
  KMS_ASSERT_OK(store_->markKeyDestroyed(expired, kT0));
  EXPECT_EQ(retirable(kT0).count(expired), 0u);
}

TEST_F(StorageStore, AConfigurationChangeReleasesOnlyKmsdsOwnBackoff) {
  addCert("own");
  addCert("peer");
  addCert("fine");
  KMS_ASSERT_OK(store_->recordFailure("own", "refused", kT0 + 600));
  KMS_ASSERT_OK(store_->noteFailureCause("own", "hash-a", false));
  KMS_ASSERT_OK(store_->recordFailure("peer", "rate limited", kT0 + 600));
  KMS_ASSERT_OK(store_->noteFailureCause("peer", "hash-a", true));
  EXPECT_EQ(store_->getCertificate("own")->value().failureWait, "backoff");
  EXPECT_EQ(store_->getCertificate("peer")->value().failureConfig, "hash-a");

  // The same configuration: every wait holds.
  EXPECT_EQ(store_->releaseBackoff("own", "hash-a").value(), false);
  EXPECT_EQ(store_->getCertificate("own")->value().nextAttemptAt, kT0 + 600);
  // Another one: kmsd's own backoff goes, the peer's wait and the failure count stay.
  EXPECT_EQ(store_->releaseBackoff("own", "hash-b").value(), true);
  EXPECT_FALSE(store_->getCertificate("own")->value().nextAttemptAt.has_value());
  EXPECT_EQ(store_->getCertificate("own")->value().failureCount, 1);
  EXPECT_EQ(store_->releaseBackoff("peer", "hash-b").value(), false);
  EXPECT_EQ(store_->getCertificate("peer")->value().nextAttemptAt, kT0 + 600);
  // Nothing failed: nothing to release; an unknown certificate is not an error.
  EXPECT_EQ(store_->releaseBackoff("fine", "hash-b").value(), false);
  EXPECT_EQ(store_->releaseBackoff("nope", "hash-b").value(), false);
  EXPECT_EQ(store_->noteFailureCause("nope", "hash-b", false).error().code, Errc::notFound);
}

TEST_F(StorageStore, StateAndFailureBookkeeping) {
  addCert("main");
  addCert("other");
  KMS_ASSERT_OK(store_->recordFailure("main", "HSM unreachable", kT0 + 30));
  KMS_ASSERT_OK(store_->recordFailure("main", "HSM still unreachable", kT0 + 90));
  auto failed = store_->getCertificate("main");
  KMS_ASSERT_OK(failed);
  ASSERT_TRUE(failed->has_value());
  EXPECT_EQ(failed->value().failureCount, 2);
  EXPECT_EQ(failed->value().lastError, "HSM still unreachable");
  EXPECT_EQ(failed->value().nextAttemptAt, kT0 + 90);
  EXPECT_EQ(failed->value().state, CertState::planned);

  KMS_ASSERT_OK(store_->setState("main", CertState::keyReady, kT0 + 5));
  auto ok = store_->getCertificate("main");
  KMS_ASSERT_OK(ok);
  EXPECT_EQ(ok->value().state, CertState::keyReady);
  EXPECT_EQ(ok->value().failureCount, 0);
  EXPECT_FALSE(ok->value().lastError.has_value());

  KMS_ASSERT_OK(store_->recordFailure("other", "rejected", std::nullopt, CertState::failed));
  auto dead = store_->getCertificate("other");
  KMS_ASSERT_OK(dead);
  EXPECT_EQ(dead->value().state, CertState::failed);
  EXPECT_EQ(dead->value().failureCount, 1);
  EXPECT_FALSE(dead->value().nextAttemptAt.has_value());

  auto due = store_->listDue(kT0 + 5, 10);
  KMS_ASSERT_OK(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ(due->at(0).name, "main");
  due = store_->listDue(kT0 + 4, 10);
  KMS_ASSERT_OK(due);
  EXPECT_TRUE(due->empty());

  auto unknown = store_->setState("nope", CertState::active, std::nullopt);
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, Errc::notFound);
  auto unknownFailure = store_->recordFailure("nope", "x", std::nullopt);
  ASSERT_FALSE(unknownFailure.has_value());
  EXPECT_EQ(unknownFailure.error().code, Errc::notFound);

  // A wait (polling, Retry-After) moves only the next attempt; failures stay counted.
  KMS_ASSERT_OK(store_->recordFailure("main", "CA busy", kT0 + 60));
  KMS_ASSERT_OK(store_->setNextAttempt("main", kT0 + 7));
  auto waiting = store_->getCertificate("main");
  EXPECT_EQ(waiting->value().nextAttemptAt, kT0 + 7);
  EXPECT_EQ(waiting->value().failureCount, 1);
  EXPECT_EQ(waiting->value().lastError, "CA busy");
  KMS_ASSERT_OK(store_->setRenewal("main", kT0 + 1000, kT0 + 86400));
  auto renewal = store_->getCertificate("main");
  EXPECT_EQ(renewal->value().renewAt, kT0 + 1000);
  EXPECT_EQ(renewal->value().ariNextCheck, kT0 + 86400);
  KMS_ASSERT_OK(store_->setRenewal("main", std::nullopt, std::nullopt));
  EXPECT_FALSE(store_->getCertificate("main")->value().renewAt.has_value());
  EXPECT_EQ(store_->setRenewal("nope", 1, 1).error().code, Errc::notFound);
  EXPECT_EQ(store_->setNextAttempt("nope", 1).error().code, Errc::notFound);

  EXPECT_EQ(parseCertState("renewal_due").value(), CertState::renewalDue);
  EXPECT_STREQ(toString(CertState::orderPending), "order_pending");
  EXPECT_FALSE(parseCertState("Planned").has_value());
}

TEST_F(StorageStore, OneOpenOrderPerCertificate) {
  addCert("main");
  auto order = store_->createOrder("main", CertState::planned);
  KMS_ASSERT_OK(order);
  EXPECT_EQ(order->certName, "main");
  EXPECT_EQ(order->status, OrderStatus::open);
  EXPECT_EQ(order->authorizationUrlsJson, "[]");

  auto second = store_->createOrder("main", CertState::planned);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, Errc::alreadyExists);
  EXPECT_EQ(second.error().nativeName, "SQLITE_CONSTRAINT_UNIQUE");
  EXPECT_EQ(second.error().message.rfind("certificate 'main' already has an open order", 0), 0u)
      << second.error().message;

  auto direct = db_->exec(
      "INSERT INTO orders (cert_id, step, created_at, updated_at) "
      "SELECT id, 'planned', 0, 0 FROM managed_certificates WHERE name = 'main'");
  ASSERT_FALSE(direct.has_value());  // the partial unique index, not only the Store, says no

  EXPECT_EQ(store_->countOpenOrders().value(), 1);
  KMS_ASSERT_OK(store_->closeOrder(order->id, OrderStatus::abandoned));
  EXPECT_EQ(store_->countOpenOrders().value(), 0);
  auto none = store_->getOpenOrder("main");
  KMS_ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
  auto next = store_->createOrder("main", CertState::planned);
  KMS_ASSERT_OK(next);
  EXPECT_NE(next->id, order->id);

  auto unknown = store_->createOrder("nope", CertState::planned);
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, Errc::notFound);
}

TEST_F(StorageStore, OrderAdvancesWithItsCertificate) {
  addCert("main");
  const std::string key = recordKey("0a1b");
  KMS_ASSERT_OK(store_->recordFailure("main", "earlier failure", kT0 + 100));
  auto order = store_->createOrder("main", CertState::planned);
  KMS_ASSERT_OK(order);

  now_ = kT0 + 50;
  OrderUpdate keyReady;
  keyReady.step = CertState::keyReady;
  keyReady.keyUri = key;
  KMS_ASSERT_OK(store_->advanceOrder(order->id, keyReady));

  OrderUpdate pending;
  pending.step = CertState::orderPending;
  pending.orderUrl = "https://ca.test/order/1";
  pending.authorizationUrlsJson = R"(["https://ca.test/authz/1"])";
  pending.finalizeUrl = "https://ca.test/order/1/finalize";
  pending.acmeStatus = "pending";
  pending.nextAttemptAt = kT0 + 55;
  auto advanced = store_->advanceOrder(order->id, pending);
  KMS_ASSERT_OK(advanced);
  EXPECT_EQ(advanced->step, CertState::orderPending);
  EXPECT_EQ(advanced->keyUri, key);  // kept from the earlier step
  EXPECT_EQ(advanced->orderUrl, "https://ca.test/order/1");
  EXPECT_EQ(advanced->authorizationUrlsJson, R"(["https://ca.test/authz/1"])");
  EXPECT_EQ(advanced->finalizeUrl, "https://ca.test/order/1/finalize");
  EXPECT_FALSE(advanced->challengeUrl.has_value());
  EXPECT_EQ(advanced->acmeStatus, "pending");
  EXPECT_EQ(advanced->createdAt, kT0);
  EXPECT_EQ(advanced->updatedAt, kT0 + 50);

  auto cert = store_->getCertificate("main");
  KMS_ASSERT_OK(cert);
  EXPECT_EQ(cert->value().state, CertState::orderPending);
  EXPECT_EQ(cert->value().failureCount, 0);
  EXPECT_EQ(cert->value().nextAttemptAt, kT0 + 55);

  auto open = store_->getOpenOrder("main");
  KMS_ASSERT_OK(open);
  ASSERT_TRUE(open->has_value());
  EXPECT_EQ(open->value().id, order->id);
  EXPECT_EQ(open->value().orderUrl, "https://ca.test/order/1");

  // An unknown key URI violates the foreign key: neither row changes.
  OrderUpdate bad;
  bad.step = CertState::authorized;
  bad.keyUri = "pkcs11:token=kms;id=%ff";
  auto refused = store_->advanceOrder(order->id, bad);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().nativeName, "SQLITE_CONSTRAINT_FOREIGNKEY");
  EXPECT_FALSE(db_->inTransaction());
  EXPECT_EQ(store_->getOpenOrder("main")->value().step, CertState::orderPending);
  EXPECT_EQ(store_->getCertificate("main")->value().state, CertState::orderPending);

  KMS_ASSERT_OK(store_->closeOrder(order->id, OrderStatus::done));
  auto closedAgain = store_->closeOrder(order->id, OrderStatus::done);
  ASSERT_FALSE(closedAgain.has_value());
  EXPECT_EQ(closedAgain.error().code, Errc::notFound);
  auto advanceClosed = store_->advanceOrder(order->id, pending);
  ASSERT_FALSE(advanceClosed.has_value());
  EXPECT_EQ(advanceClosed.error().code, Errc::notFound);
  auto reopen = store_->closeOrder(order->id, OrderStatus::open);
  ASSERT_FALSE(reopen.has_value());
  EXPECT_EQ(reopen.error().code, Errc::invalidArgument);
}

TEST_F(StorageStore, IssuedCertificatesAndLatestValid) {
  addCert("main");
  addCert("web");
  addCert("idle");
  const std::string k1 = recordKey("01");
  const std::string k2 = recordKey("02");
  const std::int64_t day = 86400;
  auto expired = store_->insertIssued(issued("main", "0a", kT0 - 100 * day, kT0 - day, k1));
  KMS_ASSERT_OK(expired);
  auto current = issued("main", "0b", kT0 - 10 * day, kT0 + 80 * day, k2);
  current.ariCertId = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
  auto currentId = store_->insertIssued(current);
  KMS_ASSERT_OK(currentId);
  auto revoked = store_->insertIssued(issued("main", "0c", kT0 - day, kT0 + 89 * day, k2));
  KMS_ASSERT_OK(revoked);
  KMS_ASSERT_OK(store_->markRevoked(revoked.value(), kT0 - 10));
  auto future = store_->insertIssued(issued("main", "0d", kT0 + day, kT0 + 91 * day, k2));
  KMS_ASSERT_OK(future);
  auto web = store_->insertIssued(issued("web", "1a", kT0 - day, kT0 + day, k1));
  KMS_ASSERT_OK(web);
  KMS_ASSERT_OK(store_->markPublished(currentId.value(), "https://cr.example.net/main-0b.pem", kT0 - 5));
  KMS_ASSERT_OK(store_->markPublished(future.value(), "https://cr.example.net/main-0d.pem", kT0 - 5));
  KMS_ASSERT_OK(store_->markPublished(web.value(), "https://cr.example.net/web-1a.pem", kT0 - 5));
  // Issued, valid and newest, but not published yet: not what verifiers get.
  auto unpublished = store_->insertIssued(issued("main", "0e", kT0 - 60, kT0 + 90 * day, k2));
  KMS_ASSERT_OK(unpublished);

  // The status listing picks the same certificate as listLatestValid, without the chain.
  addCert("idle");
  auto status = store_->listStatus(kT0);
  KMS_ASSERT_OK(status);
  ASSERT_EQ(status->size(), 3u);
  EXPECT_EQ(status->at(0).name, "idle");
  EXPECT_FALSE(status->at(0).serial.has_value());
  EXPECT_EQ(status->at(1).name, "main");
  EXPECT_EQ(status->at(1).serial, "0b");
  EXPECT_EQ(status->at(1).notAfter, kT0 + 80 * day);
  EXPECT_EQ(status->at(1).x5uUrl, "https://cr.example.net/main-0b.pem");
  EXPECT_EQ(status->at(2).serial, "1a");
  auto one = store_->listStatus(kT0, "main");
  KMS_ASSERT_OK(one);
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ(one->at(0).serial, "0b");

  auto list = store_->listIssued("main");
  KMS_ASSERT_OK(list);
  ASSERT_EQ(list->size(), 5u);
  EXPECT_EQ(list->at(0).serial, "0d");  // newest notBefore first
  EXPECT_EQ(list->at(1).serial, "0e");
  EXPECT_EQ(list->at(2).serial, "0c");
  EXPECT_EQ(list->at(2).revokedAt, kT0 - 10);
  EXPECT_EQ(list->at(3).serial, "0b");
  EXPECT_EQ(list->at(3).chainPem, kPem);
  EXPECT_EQ(list->at(3).keyUri, k2);
  EXPECT_EQ(list->at(3).ariCertId, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
  EXPECT_EQ(list->at(3).x5uUrl, "https://cr.example.net/main-0b.pem");
  EXPECT_EQ(list->at(3).publishedAt, kT0 - 5);
  EXPECT_EQ(list->at(3).createdAt, kT0);
  EXPECT_EQ(list->at(4).serial, "0a");

  auto latest = store_->listLatestValid(kT0, std::nullopt);
  KMS_ASSERT_OK(latest);
  ASSERT_EQ(latest->size(), 2u);
  EXPECT_EQ(latest->at(0).certName, "main");
  EXPECT_EQ(latest->at(0).serial, "0b");
  EXPECT_EQ(latest->at(1).certName, "web");
  latest = store_->listLatestValid(kT0 + 2 * day, std::nullopt);
  KMS_ASSERT_OK(latest);
  ASSERT_EQ(latest->size(), 1u);
  EXPECT_EQ(latest->at(0).serial, "0d");
  auto onlyWeb = store_->listLatestValid(kT0, std::string_view("web"));  // one name's only
  KMS_ASSERT_OK(onlyWeb);
  ASSERT_EQ(onlyWeb->size(), 1u);
  EXPECT_EQ(onlyWeb->at(0).certName, "web");

  auto unknownCert = store_->insertIssued(issued("nope", "ff", kT0, kT0 + day, k1));
  ASSERT_FALSE(unknownCert.has_value());
  EXPECT_EQ(unknownCert.error().code, Errc::notFound);
  auto unknownKey = store_->insertIssued(issued("main", "ff", kT0, kT0 + day, "pkcs11:id=%99"));
  ASSERT_FALSE(unknownKey.has_value());
  EXPECT_EQ(unknownKey.error().nativeName, "SQLITE_CONSTRAINT_FOREIGNKEY");
  auto backwards = store_->insertIssued(issued("main", "fe", kT0, kT0 - 1, k1));
  ASSERT_FALSE(backwards.has_value());
  EXPECT_EQ(backwards.error().nativeName, "SQLITE_CONSTRAINT_CHECK");
  // The same serial again (an order resumed after a kill): the stored row, not a second one.
  auto duplicate = store_->insertIssued(issued("main", "0a", kT0, kT0 + day, k1));
  KMS_ASSERT_OK(duplicate);
  EXPECT_EQ(duplicate.value(), expired.value());
  EXPECT_EQ(store_->listIssued("main")->size(), 5u);
  EXPECT_EQ(store_->markPublished(999, "https://x", kT0).error().code, Errc::notFound);
  EXPECT_EQ(store_->markRevoked(999, kT0).error().code, Errc::notFound);
  EXPECT_EQ(store_->markDeployed(999, kT0).error().code, Errc::notFound);
  // Deployment is recorded per certificate and read back.
  EXPECT_FALSE(store_->listIssued("main")->front().deployedAt.has_value());
  KMS_ASSERT_OK(store_->markDeployed(store_->listIssued("main")->front().id, kT0 + 7));
  EXPECT_EQ(store_->listIssued("main")->front().deployedAt, kT0 + 7);
}

TEST_F(StorageStore, KeyUsageAndChainsNoVerifierNeeds) {
  addCert("main");
  const std::string account = recordKey("aa", KeyPurpose::account);
  const std::string oldKey = recordKey("01");
  const std::string newKey = recordKey("02");
  const std::string orderKey = recordKey("03");
  const std::int64_t day = 86400;
  auto first = store_->insertIssued(issued("main", "0a", kT0 - 2 * day, kT0 + 60 * day, oldKey));
  KMS_ASSERT_OK(first);
  KMS_ASSERT_OK(store_->markPublished(first.value(), "https://cr/main/0a.pem", kT0 - 2 * day));
  auto second = store_->insertIssued(issued("main", "0b", kT0 - day, kT0 + 80 * day, newKey));
  KMS_ASSERT_OK(second);
  KMS_ASSERT_OK(store_->markPublished(second.value(), "https://cr/main/0b.pem", kT0 - 100));
  auto order = store_->createOrder("main", CertState::planned);
  KMS_ASSERT_OK(order);
  OrderUpdate u;
  u.keyUri = orderKey;
  KMS_ASSERT_OK(store_->advanceOrder(order->id, u));

  auto usage = store_->listKeyUsage(kT0, 3600);
  KMS_ASSERT_OK(usage);
  ASSERT_EQ(usage->size(), 4u);
  EXPECT_EQ((*usage)[0].keyUri, account);
  EXPECT_EQ((*usage)[0].state, "account");
  EXPECT_EQ((*usage)[1].state, "previous");
  EXPECT_EQ((*usage)[1].certName, "main");
  EXPECT_EQ((*usage)[1].until, kT0 - 100 + 3600);  // replaced at, plus retain
  EXPECT_EQ((*usage)[2].state, "active");
  EXPECT_EQ((*usage)[3].state, "order");

  // The replaced chain stays published for retain, then no verifier needs it.
  EXPECT_TRUE(store_->listStaleChains(kT0, 3600, 10)->empty());
  auto stale = store_->listStaleChains(kT0 + 3600, 3600, 10);
  KMS_ASSERT_OK(stale);
  ASSERT_EQ(stale->size(), 1u);
  EXPECT_EQ((*stale)[0].serial, "0a");
  EXPECT_EQ((*stale)[0].certName, "main");
  KMS_ASSERT_OK(store_->markUnpublished((*stale)[0].issuedId, kT0 + 3600));
  EXPECT_TRUE(store_->listStaleChains(kT0 + 3600, 3600, 10)->empty());
  // The current one, even with retain 0, never; once revoked, at once.
  EXPECT_TRUE(store_->listStaleChains(kT0 + 3600, 0, 10)->empty());
  KMS_ASSERT_OK(store_->markRevoked(second.value(), kT0 + 3601));
  EXPECT_EQ(store_->listStaleChains(kT0 + 3601, 3600, 10)->size(), 1u);
  EXPECT_EQ(store_->markUnpublished(999, kT0).error().code, Errc::notFound);
}

TEST_F(StorageStore, TheEventLogIsBoundedByAgeAndCount) {
  for (int i = 0; i < 10; ++i) {
    Event e;
    e.time = 1000 + i;  // one second apart, oldest first
    e.eventId = "KMS_TEST";
    e.message = "m" + std::to_string(i);
    KMS_ASSERT_OK(store_->appendEvent(e));
  }
  auto messages = [&] {
    std::vector<std::string> out;
    auto events = store_->listEventsAfter(0, 100);
    for (const Event& e : events.value()) {
      out.push_back(e.message);
    }
    return out;
  };
  // Older than 1003: m0..m2 go; a count bound above what is left removes nothing more.
  EXPECT_EQ(store_->pruneEvents(1003, 100).value(), 3);
  EXPECT_EQ(messages(), (std::vector<std::string>{"m3", "m4", "m5", "m6", "m7", "m8", "m9"}));
  // At most four: the newest four stay.
  EXPECT_EQ(store_->pruneEvents(0, 4).value(), 3);
  EXPECT_EQ(messages(), (std::vector<std::string>{"m6", "m7", "m8", "m9"}));
  // Nothing to do: nothing removed, and new events still get new ids.
  EXPECT_EQ(store_->pruneEvents(0, 4).value(), 0);
  Event e;
  e.time = 2000;
  e.eventId = "KMS_TEST";
  e.message = "m10";
  auto id = store_->appendEvent(e);
  KMS_ASSERT_OK(id);
  EXPECT_GT(id.value(), store_->listEventsAfter(0, 100).value().front().id);
}

TEST_F(StorageStore, HsmKeysRecordListDestroy) {
  const std::string a = recordKey("0a", KeyPurpose::account);
  const std::string b = recordKey("0b");
  auto dup = store_->recordKey(HsmKey{0, a, "0c", "dup", KeyPurpose::account, 0, {}});
  ASSERT_FALSE(dup.has_value());
  EXPECT_EQ(dup.error().nativeName, "SQLITE_CONSTRAINT_UNIQUE");
  auto upper = store_->recordKey(HsmKey{0, "pkcs11:id=%0D", "0D", "x", KeyPurpose::account, 0, {}});
  ASSERT_FALSE(upper.has_value());
  EXPECT_EQ(upper.error().nativeName, "SQLITE_CONSTRAINT_CHECK");
  auto odd = store_->recordKey(HsmKey{0, "pkcs11:id=%0e", "0e0", "x", KeyPurpose::account, 0, {}});
  ASSERT_FALSE(odd.has_value());
  auto notUri = store_->recordKey(HsmKey{0, "file:/tmp/key", "0f", "x", KeyPurpose::account, 0, {}});
  ASSERT_FALSE(notUri.has_value());
  EXPECT_EQ(notUri.error().nativeName, "SQLITE_CONSTRAINT_CHECK");

  auto live = store_->listKeys(false);
  KMS_ASSERT_OK(live);
  ASSERT_EQ(live->size(), 2u);
  EXPECT_EQ(live->at(0).keyUri, a);
  EXPECT_EQ(live->at(0).ckaIdHex, "0a");
  EXPECT_EQ(live->at(0).label, "key-0a");
  EXPECT_EQ(live->at(0).purpose, KeyPurpose::account);
  EXPECT_EQ(live->at(0).createdAt, kT0);
  EXPECT_EQ(live->at(1).purpose, KeyPurpose::certificate);

  KMS_ASSERT_OK(store_->markKeyDestroyed(b, kT0 + 7));
  live = store_->listKeys(false);
  KMS_ASSERT_OK(live);
  ASSERT_EQ(live->size(), 1u);
  auto all = store_->listKeys(true);
  KMS_ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(all->at(1).destroyedAt, kT0 + 7);
  auto again = store_->markKeyDestroyed(b, kT0 + 8);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Errc::notFound);
  auto early = store_->markKeyDestroyed(a, kT0 - 1);
  ASSERT_FALSE(early.has_value());  // destroyed before it was created
  EXPECT_EQ(early.error().nativeName, "SQLITE_CONSTRAINT_CHECK");
}

TEST_F(StorageStore, AcmeAccountPerDirectory) {
  const std::string key = recordKey("aa", KeyPurpose::account);
  const std::string key2 = recordKey("ab", KeyPurpose::account);
  AcmeAccount account;
  account.directoryUrl = "https://ca.test/directory";
  account.accountUrl = "https://ca.test/acct/1";
  account.keyUri = key;
  auto id = store_->saveAccount(account);
  KMS_ASSERT_OK(id);
  auto got = store_->getAccount("https://ca.test/directory");
  KMS_ASSERT_OK(got);
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(got->value().id, id.value());
  EXPECT_EQ(got->value().accountUrl, "https://ca.test/acct/1");
  EXPECT_EQ(got->value().keyUri, key);
  EXPECT_EQ(got->value().status, "valid");
  EXPECT_EQ(got->value().createdAt, kT0);

  now_ = kT0 + 100;
  account.keyUri = key2;  // key rollover
  account.status = "valid";
  auto again = store_->saveAccount(account);
  KMS_ASSERT_OK(again);
  EXPECT_EQ(again.value(), id.value());
  got = store_->getAccount("https://ca.test/directory");
  KMS_ASSERT_OK(got);
  EXPECT_EQ(got->value().keyUri, key2);
  EXPECT_EQ(got->value().createdAt, kT0);

  account.status = "gone";
  auto badStatus = store_->saveAccount(account);
  ASSERT_FALSE(badStatus.has_value());
  EXPECT_EQ(badStatus.error().nativeName, "SQLITE_CONSTRAINT_CHECK");
  account.status = "valid";
  account.directoryUrl = "https://other.test/directory";
  account.keyUri = "pkcs11:id=%77";
  auto badKey = store_->saveAccount(account);
  ASSERT_FALSE(badKey.has_value());
  EXPECT_EQ(badKey.error().nativeName, "SQLITE_CONSTRAINT_FOREIGNKEY");
  auto none = store_->getAccount("https://other.test/directory");
  KMS_ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());

  account.directoryUrl = "https://a.test/directory";
  account.accountUrl = "https://a.test/acct/9";
  account.keyUri = key;
  KMS_ASSERT_OK(store_->saveAccount(account));
  auto all = store_->listAccounts();
  KMS_ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2U);
  EXPECT_EQ((*all)[0].directoryUrl, "https://a.test/directory");
  EXPECT_EQ((*all)[0].keyUri, key);
  EXPECT_EQ((*all)[1].directoryUrl, "https://ca.test/directory");
  EXPECT_EQ((*all)[1].keyUri, key2);
}

TEST_F(StorageStore, SpcTokenMetadataWithoutTheToken) {
  SpcTokenMeta meta{"1234", "sha256:abcd", "jti-1", kT0 + 3600, 0};
  KMS_ASSERT_OK(store_->saveSpcToken(meta));
  auto got = store_->getSpcToken("1234", "sha256:abcd");
  KMS_ASSERT_OK(got);
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(got->value().jti, "jti-1");
  EXPECT_EQ(got->value().exp, kT0 + 3600);
  EXPECT_EQ(got->value().fetchedAt, kT0);

  meta = SpcTokenMeta{"1234", "sha256:abcd", std::nullopt, kT0 + 7200, kT0 + 3000};
  KMS_ASSERT_OK(store_->saveSpcToken(meta));
  got = store_->getSpcToken("1234", "sha256:abcd");
  KMS_ASSERT_OK(got);
  EXPECT_FALSE(got->value().jti.has_value());
  EXPECT_EQ(got->value().exp, kT0 + 7200);
  EXPECT_EQ(got->value().fetchedAt, kT0 + 3000);
  auto other = store_->getSpcToken("1234", "sha256:ffff");
  KMS_ASSERT_OK(other);
  EXPECT_FALSE(other->has_value());

  auto columns = db_->prepare("SELECT count(*) FROM pragma_table_info('spc_tokens') WHERE name LIKE '%token%'");
  KMS_ASSERT_OK(columns);
  KMS_ASSERT_OK(columns->step());
  EXPECT_EQ(columns->columnInt64(0), 0);
}

TEST_F(StorageStore, EventsNewestFirstAndAppendOnly) {
  auto append = [this](std::int64_t time, std::optional<std::string> cert, const char* id, const std::string& message) {
    Event e;
    e.time = time;
    e.certName = std::move(cert);
    e.eventId = id;
    e.level = EventLevel::warning;
    e.message = message;
    e.fieldsJson = R"({"attempt":1})";
    auto r = store_->appendEvent(e);
    EXPECT_TRUE(r.has_value()) << r.error().toString();
  };
  append(kT0 + 10, "main", "KMS_RENEW_FAILED", "m1");
  append(kT0 + 30, "web", "KMS_RENEW_FAILED", "w1");
  append(kT0 + 20, "main", "KMS_ORDER_CREATED", "m2");
  append(kT0 + 20, "main", "KMS_ORDER_CREATED", "m3");  // same second: insertion order
  append(kT0 + 5, std::nullopt, "KMS_STARTED", "daemon");
  append(0, "main", "KMS_KEY_READY", "m-now");  // time 0 = now

  auto all = store_->listEvents(std::nullopt, 100);
  KMS_ASSERT_OK(all);
  ASSERT_EQ(all->size(), 6u);
  std::vector<std::string> order;
  for (const Event& e : all.value()) {
    order.push_back(e.message);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"w1", "m3", "m2", "m1", "daemon", "m-now"}));
  EXPECT_EQ(all->back().time, kT0);
  EXPECT_FALSE(all->at(4).certName.has_value());
  EXPECT_EQ(all->at(0).eventId, "KMS_RENEW_FAILED");
  EXPECT_EQ(all->at(0).level, EventLevel::warning);
  EXPECT_EQ(all->at(0).fieldsJson, R"({"attempt":1})");

  auto main = store_->listEvents("main", 2);
  KMS_ASSERT_OK(main);
  ASSERT_EQ(main->size(), 2u);
  EXPECT_EQ(main->at(0).message, "m3");
  EXPECT_EQ(main->at(1).message, "m2");
  auto none = store_->listEvents("main", 0);
  KMS_ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(store_->listEvents(std::nullopt, -1).error().code, Errc::invalidArgument);

  // By id for followers (`kmsctl events -f`): oldest first after the id given.
  auto after = store_->listEventsAfter(all->at(2).id, 100);  // after "m2"
  KMS_ASSERT_OK(after);
  std::vector<std::string> later;
  for (const Event& e : after.value()) {
    later.push_back(e.message);
  }
  EXPECT_EQ(later, (std::vector<std::string>{"m3", "daemon", "m-now"}));
  EXPECT_EQ(store_->listEventsAfter(0, 2)->size(), 2u);
  EXPECT_EQ(store_->listEventsAfter(0, -1).error().code, Errc::invalidArgument);

  auto update = db_->exec("UPDATE events SET message = 'rewritten'");
  ASSERT_FALSE(update.has_value());
  EXPECT_NE(update.error().message.find("events are append-only"), std::string::npos);
  Event bad;
  bad.eventId = "renew failed";
  bad.message = "x";
  auto badId = store_->appendEvent(bad);
  ASSERT_FALSE(badId.has_value());
  EXPECT_EQ(badId.error().nativeName, "SQLITE_CONSTRAINT_CHECK");
  bad.eventId = "KMS_X";
  bad.fieldsJson = "[1]";
  EXPECT_FALSE(store_->appendEvent(bad).has_value());
}

TEST_F(StorageStore, TransactGroupsCallsAtomically) {
  addCert("main");
  auto failed = store_->transact([this]() -> Result<void> {
    auto order = store_->createOrder("main", CertState::planned);
    if (!order.has_value()) {
      return fail(order.error());
    }
    Event e;
    e.eventId = "KMS_ORDER_CREATED";
    e.message = "created";
    if (auto r = store_->appendEvent(e); !r.has_value()) {
      return fail(r.error());
    }
    return fail(Errc::protocol, "CA said no");
  });
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().message, "CA said no");
  EXPECT_FALSE(db_->inTransaction());
  EXPECT_FALSE(store_->getOpenOrder("main")->has_value());
  EXPECT_TRUE(store_->listEvents(std::nullopt, 10)->empty());

  auto committed = store_->transact([this]() -> Result<void> {
    auto order = store_->createOrder("main", CertState::planned);
    if (!order.has_value()) {
      return fail(order.error());
    }
    return store_->setState("main", CertState::planned, kT0 + 1);
  });
  KMS_ASSERT_OK(committed);
  EXPECT_TRUE(store_->getOpenOrder("main")->has_value());
}

TEST_F(StorageStore, TrustDocumentsKeepOneOfEachKind) {
  EXPECT_FALSE(store_->getTrust(TrustKind::caList)->has_value());
  TrustDocument list;
  list.kind = TrustKind::caList;
  list.body = {'a', '.', 'b', '.', 'c'};
  list.sequence = 3;
  list.nextUpdate = kT0 + 86400;
  KMS_ASSERT_OK(store_->saveTrust(list));
  TrustDocument crl;
  crl.kind = TrustKind::crl;
  crl.body = {0x30, 0x00, 0xff};
  crl.thisUpdate = kT0 - 60;
  crl.nextUpdate = kT0 + 3600;
  crl.fetchedAt = kT0 + 5;
  KMS_ASSERT_OK(store_->saveTrust(crl));

  list.sequence = 4;
  list.body = {'d', '.', 'e', '.', 'f'};
  now_ = kT0 + 10;
  KMS_ASSERT_OK(store_->saveTrust(list));

  auto gotList = store_->getTrust(TrustKind::caList);
  ASSERT_TRUE(gotList.has_value() && gotList->has_value());
  EXPECT_EQ((*gotList)->body, list.body);
  EXPECT_EQ((*gotList)->sequence, 4);
  EXPECT_EQ((*gotList)->nextUpdate, kT0 + 86400);
  EXPECT_FALSE((*gotList)->thisUpdate.has_value());
  EXPECT_EQ((*gotList)->fetchedAt, kT0 + 10);
  auto gotCrl = store_->getTrust(TrustKind::crl);
  ASSERT_TRUE(gotCrl.has_value() && gotCrl->has_value());
  EXPECT_EQ((*gotCrl)->body, crl.body);
  EXPECT_EQ((*gotCrl)->thisUpdate, kT0 - 60);
  EXPECT_EQ((*gotCrl)->fetchedAt, kT0 + 5);
  EXPECT_FALSE((*gotCrl)->sequence.has_value());

  TrustDocument empty;
  empty.kind = TrustKind::crl;
  EXPECT_FALSE(store_->saveTrust(empty).has_value());  // CHECK (length(body) > 0)
  EXPECT_EQ(store_->getTrust(TrustKind::crl)->value().body, crl.body);
}

}  // namespace
}  // namespace kms::storage

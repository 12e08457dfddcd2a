#!/usr/bin/python3
"""What kmsd sent kms-lab, checked with code that is not kmsd's (Python's cryptography), so
that a bug kmsd and kms-lab would share (they once shared kms_acme) cannot pass unseen.

    crosscheck.py REQUESTS.jsonl SPC

REQUESTS.jsonl: kms-lab --record's log ({"path", "body"} per POST). Checks that every ACME
request is a flattened JWS whose ES256 signature verifies with the account key (the jwk of
newAccount), that the CSR of finalize is self-signed correctly and carries a TNAuthList for
SPC, and that the SPC token request's fingerprint is SHA-256 of the account key's SPKI.
Prints what it checked; exit 1 on the first mismatch."""

import base64
import hashlib
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

TN_AUTH_LIST = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")


def b64u(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fail(why):
    print("MISMATCH: " + why)
    sys.exit(1)


def jwk_key(jwk):
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        fail("account key is not an EC P-256 JWK: %r" % jwk)
    x = int.from_bytes(b64u(jwk["x"]), "big")
    y = int.from_bytes(b64u(jwk["y"]), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def verify_jws(key, jws, path):
    signature = b64u(jws["signature"])
    if len(signature) != 64:
        fail("%s: ES256 signature is %d bytes, not 64 (r||s)" % (path, len(signature)))
    der = utils.encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, (jws["protected"] + "." + jws["payload"]).encode(), ec.ECDSA(hashes.SHA256()))
    except Exception as e:  # InvalidSignature
        fail("%s: the JWS signature does not verify with the account key (%s)" % (path, type(e).__name__))


def der_item(data, at):
    """(tag, value, next offset) of the DER item at `at`."""
    tag = data[at]
    length = data[at + 1]
    at += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[at:at + n], "big")
        at += n
    return tag, data[at:at + length], at + length


def tn_auth_list_spcs(der):
    """The SPCs of a TNAuthList (RFC 8226: SEQUENCE OF TNEntry, spc [0] IA5String)."""
    tag, entries, _ = der_item(der, 0)
    if tag != 0x30:
        fail("TNAuthList is not a SEQUENCE (tag 0x%02x)" % tag)
    spcs = []
    at = 0
    while at < len(entries):
        tag, value, at = der_item(entries, at)
        if tag == 0xA0:  # [0] EXPLICIT around the IA5String
            inner, spc, _ = der_item(value, 0)
            if inner != 0x16:
                fail("TNEntry spc is not an IA5String (tag 0x%02x)" % inner)
            spcs.append(spc.decode("ascii"))
        elif tag == 0x80:  # [0] IMPLICIT
            spcs.append(value.decode("ascii"))
        else:
            fail("TNEntry with tag 0x%02x, not spc [0]" % tag)
    return spcs


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    spc = sys.argv[2]
    account = None
    checked = {"jws": 0, "csr": 0, "fingerprint": 0}
    for r in records:
        if not r["path"].startswith("/acme/"):
            continue
        jws = json.loads(r["body"])
        protected = json.loads(b64u(jws["protected"]))
        if protected.get("alg") != "ES256":
            fail("%s: alg %r, not ES256" % (r["path"], protected.get("alg")))
        if "jwk" in protected:
            account = jwk_key(protected["jwk"])
        if account is None:
            fail("%s: signed with a kid before any newAccount" % r["path"])
        verify_jws(account, jws, r["path"])
        checked["jws"] += 1
        if r["path"].endswith("/finalize"):
            csr = x509.load_der_x509_csr(b64u(json.loads(b64u(jws["payload"]))["csr"]))
            if not csr.is_signature_valid:
                fail("the CSR's signature does not verify")
            ext = csr.extensions.get_extension_for_oid(TN_AUTH_LIST)
            spcs = tn_auth_list_spcs(ext.value.value)
            if spcs != [spc]:
                fail("the CSR's TNAuthList names %r, not [%r]" % (spcs, spc))
            checked["csr"] += 1
    if account is None:
        fail("no newAccount request recorded")
    spki = account.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    want = "SHA256 " + ":".join("%02X" % b for b in hashlib.sha256(spki).digest())
    for r in records:
        if r["path"].startswith("/sti-pa/") and r["path"].endswith("/token"):
            atc = json.loads(r["body"])["atc"]
            if atc.get("fingerprint") != want:
                fail("the token request's fingerprint %r is not %r" % (atc.get("fingerprint"), want))
            tn = tn_auth_list_spcs(base64.b64decode(atc["tkvalue"]))
            if tn != [spc]:
                fail("the token request's tkvalue names %r, not [%r]" % (tn, spc))
            checked["fingerprint"] += 1
    if checked["csr"] == 0 or checked["fingerprint"] == 0:
        fail("nothing to check: %r" % checked)
    print("checked %d JWS, %d CSR, %d token request(s)" % (checked["jws"], checked["csr"], checked["fingerprint"]))


main()

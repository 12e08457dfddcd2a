#!/usr/bin/python3
"""Serves recorded HTTP responses on 127.0.0.1 for tests of how clients treat what a
server says, and checks that every POST is a proper ACME request (RFC 8555 §6.2).

Usage: recorded_server.py ROUTES_JSON [VIOLATIONS_FILE]
Routes come from a JSON file:
  {"GET /path": {"status": 200, "headers": {"Content-Type": "..."}, "body": "...",
                 "body_repeat": N},
   "_options": {"verify_kid": false, "accounts": {"<kid URL>": <JWK object>}}}
"@PORT@" in bodies, headers and account URLs is replaced by the bound port. A HEAD with
no route of its own is answered by the GET route. Prints the port on the first line of
stdout, then serves until killed.

Nonces: every response carries a Replay-Nonce, a fresh random one unless the route sets
the header itself (a test may fix the value, or send "" for none). Each time a value is
sent it may come back once more, so a route that always hands out "abc" accepts "abc"
once per answer; a random nonce therefore works exactly once.

Every POST is checked before its route is looked up: Content-Type application/jose+json;
the body a flattened JWS (only "protected", "payload", "signature", all unpadded
base64url); the protected header a JSON object with alg ES256, exactly one of jwk and kid,
url equal to http://127.0.0.1:<port><request path>, and a nonce this server sent and that
has not come back since; the payload empty (POST-as-GET) or a JSON object; the raw r||s
signature verifying over protected "." payload with the jwk, or with the kid's key. A
request carrying a nonce uses it up, even when something else in it is wrong.

Keys of kids: a jwk request that passes every check and whose route answers with a
Location header teaches the server that Location (a newAccount's account URL) is a kid
for that key; "_options.accounts" declares more up front. A kid the server has not
learnt is not checked (the signature cannot be), unless "_options.verify_kid" is true:
then it is a violation. Key changes are not followed.

A POST that breaks a rule gets HTTP 400, application/problem+json, type badNonce when only
the nonce is wrong and malformed otherwise, with a detail naming every violation; each
violation is also appended to VIOLATIONS_FILE as one line "POST /path: what is wrong",
before the answer is sent."""
import base64
import http.server
import json
import re
import secrets
import sys
import threading

# python3-cryptography (deploy/install-deps.sh) verifies the ES256 signatures.
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

JOSE_MEDIA_TYPE = "application/jose+json"
JWS_MEMBERS = ("protected", "payload", "signature")
BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
OPTIONS = ("verify_kid", "accounts")


class NotJws(Exception):
    """The body cannot be read as a JWS at all: nothing further can be checked."""


def quoted(value):
    """A value from the request as JSON text, short and on one line, for messages."""
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."


def b64url_decode(text, what):
    """Strict unpadded base64url (RFC 7515 §2): no padding, no other characters."""
    if not isinstance(text, str) or not BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise NotJws(what + " is not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def p256_key(jwk):
    """The public key of a P-256 JWK, or ValueError saying why it is not one."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("not an EC P-256 JWK")
    if "d" in jwk:
        raise ValueError("it holds a private key (\"d\")")
    try:
        x = b64url_decode(jwk.get("x"), "x")
        y = b64url_decode(jwk.get("y"), "y")
    except NotJws as e:
        raise ValueError(str(e)) from None
    if len(x) != 32 or len(y) != 32:
        raise ValueError("x and y are not 32 bytes each")
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1())
    try:
        return numbers.public_key()
    except ValueError:
        raise ValueError("(x, y) is not a point on P-256") from None


def es256_verifies(key, signing_input, signature):
    """ES256 per RFC 7518 §3.4: 64 raw bytes r||s, not DER."""
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


class Checker:
    """What the server remembers between requests (nonces, account keys) and the checks.
    Requests arrive on several threads; one lock guards all of it."""

    def __init__(self, port, options, violations_path):
        self.port = port
        self.verify_kid = bool(options.get("verify_kid", False))
        self.violations_path = violations_path
        self.lock = threading.Lock()
        self.unused = {}  # nonce -> times sent and not yet come back
        self.used = set()  # nonces that came back at least once
        self.accounts = {}  # kid -> public key
        for kid, jwk in options.get("accounts", {}).items():
            self.accounts[kid.replace("@PORT@", str(port))] = p256_key(jwk)

    def issue(self, nonce):
        with self.lock:
            self.unused[nonce] = self.unused.get(nonce, 0) + 1

    def learn(self, kid, key):
        with self.lock:
            self.accounts[kid] = key

    def spend(self, nonce):
        """Uses the nonce up; None if it was good, else why not."""
        with self.lock:
            left = self.unused.get(nonce, 0)
            if left:
                self.unused[nonce] = left - 1
                self.used.add(nonce)
                return None
            if nonce in self.used:
                return "nonce " + quoted(nonce) + " was already used"
            return "nonce " + quoted(nonce) + " was never issued by this server"

    def record(self, line):
        if self.violations_path is None:
            return
        with self.lock, open(self.violations_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def check(self, path, content_type, body):
        """Checks one POST. Returns (violations, key): violations as (ACME error type,
        text), key the verified jwk's public key when the request used one, else None."""
        violations = []

        def malformed(text):
            violations.append(("malformed", text))

        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type != JOSE_MEDIA_TYPE:
            malformed("Content-Type is " + quoted(content_type or "") + ", not " + JOSE_MEDIA_TYPE)
        try:
            jws, header = self.parse(body)
        except NotJws as e:
            malformed("body is not a flattened JWS: " + str(e))
            return violations, None
        for member in sorted(set(jws) - set(JWS_MEMBERS)):
            malformed("JWS member " + quoted(member) + " is not allowed (RFC 8555 section 6.2)")
        payload_b64 = True
        try:
            payload = b64url_decode(jws["payload"], "payload")
            if payload and not isinstance(json.loads(payload), dict):
                raise ValueError
        except NotJws as e:
            malformed(str(e))
            payload_b64 = False
        except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            malformed("payload is neither empty (POST-as-GET) nor a JSON object")
        try:
            signature = b64url_decode(jws["signature"], "signature")
        except NotJws as e:
            malformed(str(e))
            signature = None

        alg = header.get("alg")
        if alg != "ES256":
            malformed("alg is " + quoted(alg) + ", not \"ES256\"")
        expected_url = "http://127.0.0.1:%d%s" % (self.port, path)
        if "url" not in header:
            malformed("protected header has no url")
        elif header["url"] != expected_url:
            malformed("url " + quoted(header["url"]) + " is not the URL the request was sent to, " +
                      quoted(expected_url))
        if "nonce" not in header:
            violations.append(("badNonce", "protected header has no nonce"))
        elif not isinstance(header["nonce"], str):
            violations.append(("badNonce", "nonce " + quoted(header["nonce"]) + " is not a string"))
        else:
            wrong = self.spend(header["nonce"])
            if wrong:
                violations.append(("badNonce", wrong))

        key, signer, jwk_key = None, None, None
        if ("jwk" in header) == ("kid" in header):
            malformed("protected header has " + ("both jwk and kid" if "jwk" in header else "neither jwk nor kid"))
        elif "jwk" in header:
            try:
                key = jwk_key = p256_key(header["jwk"])
                signer = "the jwk"
            except ValueError as e:
                malformed("jwk is not a P-256 public key: " + str(e))
        elif not isinstance(header["kid"], str):
            malformed("kid " + quoted(header["kid"]) + " is not a string")
        else:
            kid = header["kid"]
            with self.lock:
                key = self.accounts.get(kid)
            signer = "the key of kid " + quoted(kid)
            if key is None and self.verify_kid:
                malformed("kid " + quoted(kid) + " is not an account this server knows")

        # With another alg, or parts that are not base64url, there is nothing to verify.
        if key is not None and signature is not None and payload_b64 and alg == "ES256":
            if len(signature) != 64:
                malformed("signature is %d bytes, not the 64 of ES256 r||s" % len(signature))
            elif not es256_verifies(key, (jws["protected"] + "." + jws["payload"]).encode("ascii"), signature):
                malformed("signature does not verify with " + signer)
        return violations, (jwk_key if not violations else None)

    @staticmethod
    def parse(body):
        """The flattened JWS object and its decoded protected header, or NotJws."""
        try:
            jws = json.loads(body)
        except ValueError:
            raise NotJws("not JSON") from None
        if not isinstance(jws, dict):
            raise NotJws("not a JSON object")
        for member in JWS_MEMBERS:
            if not isinstance(jws.get(member), str):
                raise NotJws("no string member " + quoted(member))
        try:
            header = json.loads(b64url_decode(jws["protected"], "protected"))
        except ValueError:
            raise NotJws("protected is not base64url JSON") from None
        if not isinstance(header, dict):
            raise NotJws("protected is not a JSON object")
        return jws, header


def main():
    routes_file = sys.argv[1]
    violations_path = sys.argv[2] if len(sys.argv) > 2 else None
    with open(routes_file, encoding="utf-8") as f:
        routes = json.load(f)
    options = routes.pop("_options", {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        sys.exit("recorded_server.py: unknown _options " + ", ".join(unknown))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), None)
    port = server.server_address[1]
    try:
        checker = Checker(port, options, violations_path)
    except ValueError as e:
        sys.exit("recorded_server.py: _options.accounts: " + str(e))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, headers, body, send_body):
            """Sends an answer, adding a Replay-Nonce unless headers have one."""
            if not any(name.lower() == "replay-nonce" for name in headers):
                headers = dict(headers, **{"Replay-Nonce": secrets.token_urlsafe(16)})
            for name, value in headers.items():
                if name.lower() == "replay-nonce" and value:
                    checker.issue(value)  # before it is sent: the client may use it at once
            data = body.encode("utf-8")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def refuse(self, violations):
            kinds = {kind for kind, _ in violations}
            texts = [text for _, text in violations]
            for text in texts:
                checker.record(self.command + " " + self.path + ": " + text)
            problem = {"type": "urn:ietf:params:acme:error:" + ("badNonce" if kinds == {"badNonce"} else "malformed"),
                       "detail": "; ".join(texts), "status": 400}
            self.send(400, {"Content-Type": "application/problem+json"}, json.dumps(problem), True)

        def answer(self, send_body):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            jwk_key = None
            if self.command == "POST":
                violations, jwk_key = checker.check(self.path, self.headers.get("Content-Type"), body)
                if violations:
                    self.refuse(violations)
                    return
            route = routes.get(self.command + " " + self.path)
            if route is None and self.command == "HEAD":
                route = routes.get("GET " + self.path)
            if route is None:
                route = {"status": 404, "headers": {"Content-Type": "text/plain"}, "body": "no route"}
            text = route.get("body", "").replace("@PORT@", str(port)) * int(route.get("body_repeat", 1))
            headers = {name: value.replace("@PORT@", str(port)) for name, value in route.get("headers", {}).items()}
            location = next((value for name, value in headers.items() if name.lower() == "location"), None)
            if jwk_key is not None and location:
                checker.learn(location, jwk_key)  # the newAccount answer names the kid
            self.send(route.get("status", 200), headers, text, send_body)

        def do_GET(self):
            self.answer(True)

        def do_POST(self):
            self.answer(True)

        def do_HEAD(self):
            self.answer(False)

    server.RequestHandlerClass = Handler
    print(port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

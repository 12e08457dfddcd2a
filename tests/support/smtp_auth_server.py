"""An SMTP server for kmsd's alert tests that needs STARTTLS and then AUTH (LOGIN or PLAIN):
aiosmtpd's Controller with a Maildir handler. Mail whose login or password is wrong is
refused (535). Python 3 from Debian (python3-aiosmtpd).

usage: smtp_auth_server.py PORT CERT KEY USER PASSWORD_FILE MAILDIR   (MAILDIR.ready once listening)
"""
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

PORT, CERT, KEY, USER, PASSWORD_FILE, MAILDIR = sys.argv[1:7]
with open(PASSWORD_FILE, "rb") as f:
    PASSWORD = f.read().strip()


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() and \
        auth_data.password == PASSWORD
    return AuthResult(success=ok)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(CERT, KEY)
controller = Controller(Mailbox(MAILDIR), hostname="127.0.0.1", port=int(PORT), tls_context=context,
                        require_starttls=True, auth_require_tls=True, auth_required=True,
                        authenticator=authenticate)
controller.start()
open(MAILDIR.rstrip("/") + ".ready", "w").close()
threading.Event().wait()

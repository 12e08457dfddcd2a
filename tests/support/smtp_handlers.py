"""aiosmtpd handlers for kmsd's alert tests: a Maildir that refuses recipients at
@refused.invalid with 550, as a mail server refusing an unknown mailbox does."""
from aiosmtpd.handlers import Mailbox


class RefusingMailbox(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.invalid"):
            return "550 5.1.1 <%s>: Recipient address rejected" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

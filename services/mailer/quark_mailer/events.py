"""What the mailer consumes: `quark.auth.email_requested` and `quark.auth.sms_requested` — and it alone does
(docs/operations.md).

Retries and dead-lettering are the SDK's consumer machinery: a temporary delivery failure raises, so
JetStream redelivers after the next pause of `retry_backoff`; after `max_attempts` deliveries, or at
once for a permanent failure (5xx, unknown kind, a payload that does not fit), the event goes to the
dead-letter stream `QUARK_DLQ` (subject `quark.dlq.mailer.mail`) and consumption continues.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from quark_mailer import service
from quark_mailer.runtime import MailerRuntime
from quark_mailer.schemas import EmailRequestedIn, SmsRequestedIn
from quark_sdk.events import CloudEvent, Consumer

# One mail per delivery round: a slow relay must not hold a batch of others past their ack_wait.
mail = Consumer[MailerRuntime]("mail", batch_size=1, ack_wait=60.0)


@mail.on("quark.auth.email_requested")
async def on_email_requested(rt: MailerRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await service.deliver(session, rt, event_id=event.id,
                          request=event.payload(EmailRequestedIn))


# SMS: its own durable consumer (`mailer-sms`), with the same retry schedule and dead-letter stream.
sms = Consumer[MailerRuntime]("sms", batch_size=1, ack_wait=60.0)


@sms.on("quark.auth.sms_requested")
async def on_sms_requested(rt: MailerRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await service.deliver_sms(session, rt, event_id=event.id, request=event.payload(SmsRequestedIn))

"""The mailer module of the Quark station: renders and sends the mails other modules request."""

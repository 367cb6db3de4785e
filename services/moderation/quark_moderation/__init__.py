"""The moderation module of the Quark station: one queue of reports and flags, decisions, the audit log."""

"""Requests, responses, published events (registered) and consumed events (plain models) of messaging.

The hard caps on request models only bound parsing; the configured limits (settings) are
checked by the service.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from quark_sdk.events import EventPayload, event_type
from quark_sdk.pagination import Page

Kind = Literal["direct", "group", "channel"]
Role = Literal["owner", "admin", "member", "subscriber"]


def _clean_text(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and lone surrogates cannot be encoded: refuse them as bad input."""
    if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("text contains NUL characters or lone surrogates")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- requests


class DirectChatCreate(_Strict):
    user_id: uuid.UUID


class ChatCreate(_Strict):
    kind: Literal["group", "channel"]
    title: str = Field(min_length=1, max_length=1000)
    member_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10_000)

    _title = field_validator("title")(_clean_text)


class ChatUpdate(_Strict):
    title: str = Field(min_length=1, max_length=1000)

    _title = field_validator("title")(_clean_text)


class InviteRequest(_Strict):
    user_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000)


class RoleChange(_Strict):
    role: Literal["admin", "member"]


class MessageCreate(_Strict):
    body: str = Field(default="", max_length=20_000)
    reply_to: int | None = Field(default=None, ge=1)
    attachments: list[str] = Field(default_factory=list, max_length=1000)
    client_msg_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")

    _body = field_validator("body")(_clean_text)

    @field_validator("attachments")
    @classmethod
    def _media_ids(cls, v: list[str]) -> list[str]:
        for media_id in v:
            if not (1 <= len(media_id) <= 64) or not all(c.isalnum() or c in "-_" for c in media_id):
                raise ValueError("attachments are media ids (1-64 characters of letters, digits, '-' and '_')")
        return v


class MessageEdit(_Strict):
    body: str = Field(min_length=1, max_length=20_000)

    _body = field_validator("body")(_clean_text)


class ReadMark(_Strict):
    seq: int = Field(ge=0)


# --------------------------------------------------------------------------- responses


class MemberOut(BaseModel):
    user_id: uuid.UUID
    username: str | None
    role: Role
    last_read_seq: int
    joined_at: datetime


class MessageOut(BaseModel):
    id: int
    conversation_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID | None
    body: str
    reply_to: int | None
    attachments: list[str]
    mentions: list[uuid.UUID]
    client_msg_id: str | None
    created_at: datetime
    edited_at: datetime | None
    deleted: bool
    hidden: bool = False  # hidden by a moderator: a tombstone, like a deleted message
    # The author deleted the account: the message is a tombstone (sender_id null), its seq keeps the history whole.
    sender_deleted: bool = False


class ChatOut(BaseModel):
    id: uuid.UUID
    kind: Kind
    title: str | None
    owner_id: uuid.UUID | None
    member_count: int
    last_seq: int
    created_at: datetime
    last_activity_at: datetime
    role: Role | None = None  # the caller's role, None when not a member (public channel)
    unread: int = 0
    last_read_seq: int = 0
    peer_id: uuid.UUID | None = None  # direct chats: the other person
    last_message: MessageOut | None = None


class ChatPage(Page[ChatOut]):
    """A page of conversations, most recently active first."""


class MessagePage(BaseModel):
    """Ascending by seq. `older` / `newer` are the `before` / `after` values of the adjacent pages (null: none)."""

    items: list[MessageOut]
    older: int | None
    newer: int | None


class ChatDetail(ChatOut):
    members: list[MemberOut] = Field(default_factory=list)
    messages: MessagePage | None = Field(
        default=None,
        description="with `?messages=N`: the history's latest N messages (or those before `before`), as "
        "`GET /api/v1/chats/{chat_id}/messages?limit=N&before=...` answers them; null without it",
    )


class UnreadOut(BaseModel):
    total: int
    conversations: dict[str, int]


class NotificationOut(BaseModel):
    id: int
    kind: str
    actor_id: uuid.UUID | None
    data: dict[str, Any]
    count: int
    created_at: datetime
    updated_at: datetime
    read: bool


class NotificationPage(Page[NotificationOut]):
    """A page of notifications, newest first."""


class UnreadCount(BaseModel):
    unread: int


class ReadOut(BaseModel):
    """Where the caller's read marker stands now (it never moves back)."""

    last_read_seq: int


class Marked(BaseModel):
    """How many notifications were marked read."""

    marked: int


# --------------------------------------------------------------------------- events published


@event_type("quark.message.sent")
class MessageSent(EventPayload):
    """A message was stored in a conversation (its body stays in messaging: messages are private)."""

    message_id: int
    conversation_id: str
    conversation_kind: str
    seq: int
    sender_id: str
    reply_to: int | None
    attachments: list[str]
    mention_ids: list[str]
    created_at: datetime


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


class ReportOut(BaseModel):
    id: uuid.UUID
    message_id: int
    status: str
    created_at: datetime


class ThreadLine(BaseModel):
    message_id: str
    sender_id: str | None
    sender_username: str | None = None
    body: str
    created_at: datetime
    reported: bool = False


@event_type("quark.message.reported")
class MessageReported(EventPayload):
    """A participant reported a message of a chat. Only the moderation module may read it (a private event):
    `thread` is the reported message and its few neighbours — nothing else of the chat."""

    report_id: str
    chat_id: str
    message_id: str
    author_id: str | None
    reporter_id: str
    reason: str
    thread: list[ThreadLine]


@event_type("quark.chat.created")
class ChatCreated(EventPayload):
    """A conversation was created (direct chat, group or public channel)."""

    conversation_id: str
    kind: str
    title: str | None
    owner_id: str | None
    member_ids: list[str]
    created_at: datetime


@event_type("quark.notification.created")
class NotificationCreated(EventPayload):
    """A notification was stored for `user_id`; messaging pushes it to the user's open WebSockets."""

    notification_id: int
    user_id: str
    kind: str
    actor_id: str | None
    data: dict[str, Any]
    created_at: datetime


# --------------------------------------------------------------------------- events consumed (never registered)


class _Consumed(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UserRegistered(_Consumed):
    user_id: uuid.UUID
    username: str = Field(min_length=1, max_length=64)


class ProfileChanged(_Consumed):
    user_id: uuid.UUID
    username: str | None = Field(default=None, min_length=1, max_length=64)


class UserFollowed(_Consumed):
    follower_id: uuid.UUID
    follower_username: str | None = Field(default=None, max_length=64)
    followee_id: uuid.UUID
    followee_username: str | None = Field(default=None, max_length=64)


class UserBlockChanged(_Consumed):
    blocker_id: uuid.UUID
    blocked_id: uuid.UUID


class UserDeleted(_Consumed):
    user_id: uuid.UUID


class CommentCreated(_Consumed):
    comment_id: str = Field(max_length=64)
    post_id: str = Field(max_length=64)
    post_author_id: uuid.UUID
    author_id: uuid.UUID
    author_username: str | None = Field(default=None, max_length=64)
    parent_id: str | None = Field(default=None, max_length=64)
    parent_author_id: uuid.UUID | None = None
    body_text: str = ""


class PostReacted(_Consumed):
    post_id: str = Field(max_length=64)
    post_author_id: uuid.UUID
    user_id: uuid.UUID
    kind: str = Field(max_length=64)
    action: Literal["added", "removed"]


class NotificationRef(_Consumed):
    notification_id: int
    user_id: uuid.UUID


class ModerationDecided(_Consumed):
    """`quark.moderation.decided`: a moderator's decision; messaging applies those about its messages."""

    decision_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)
    target_id: str = Field(min_length=1, max_length=64)
    module: str = Field(min_length=1, max_length=32)
    action: Literal["dismiss", "hide", "delete", "warn", "suspend"]

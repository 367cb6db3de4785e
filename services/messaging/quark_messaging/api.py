"""HTTP routes of the messaging service: thin, they authorise, call service functions and shape responses.

The WebSocket route lives in ws.py; both call the same service functions.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from quark_messaging import accounts, notifications, reads, reports, sending
from quark_messaging import chats as chat_rules
from quark_messaging import messages as message_rules
from quark_messaging.runtime import MessagingRuntime
from quark_messaging.schemas import (
    ChatCreate,
    ChatDetail,
    ChatOut,
    ChatPage,
    ChatUpdate,
    DirectChatCreate,
    InviteRequest,
    Marked,
    MessageCreate,
    MessageEdit,
    MessageOut,
    MessagePage,
    NotificationOut,
    NotificationPage,
    ReadMark,
    ReadOut,
    ReportCreate,
    ReportOut,
    RoleChange,
    UnreadCount,
    UnreadOut,
)
from quark_sdk.app import DbSession, ReadSession, RuntimeDep
from quark_sdk.auth import UserId, WritingUser
from quark_sdk.errors import InvalidInput
from quark_sdk.pagination import MAX_LIMIT, Cursor, Limit
from quark_sdk.routing import GuardedRoute

# GuardedRoute: request bodies capped (413), NUL in path/query and values PostgreSQL refuses are 422s.
chats = APIRouter(prefix="/api/v1/chats", tags=["chats"], route_class=GuardedRoute)
messages = APIRouter(prefix="/api/v1/messages", tags=["messages"], route_class=GuardedRoute)
notes = APIRouter(prefix="/api/v1/notifications", tags=["notifications"], route_class=GuardedRoute)


ChatId = Annotated[uuid.UUID, Path()]
MessageId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Seq = Annotated[int | None, Query(ge=0, le=2**63 - 1)]


Runtime = Annotated[MessagingRuntime, RuntimeDep]


async def write_limit(rt: MessagingRuntime, uid: uuid.UUID) -> None:
    await rt.limiter.check(f"write:{uid}", limit=rt.settings.write_rate_limit, window=rt.settings.message_rate_window)


# --------------------------------------------------------------------------- chats


@chats.get("", response_model=ChatPage)
async def my_chats(uid: UserId, rt: Runtime, session: DbSession, cursor: Cursor = None, limit: Limit = 50) -> ChatPage:
    return await reads.list_chats(session, uid, limit=limit, cursor=cursor)


@chats.post("", response_model=ChatOut, status_code=201)
async def create_chat(body: ChatCreate, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession) -> ChatOut:
    await write_limit(rt, uid)
    await accounts.touch_user(rt, uid, writer.username)
    return await chat_rules.create_chat(rt, session, uid, body.kind, body.title, body.member_ids)


@chats.post(
    "/direct",
    response_model=ChatOut,
    status_code=201,
    responses={200: {"model": ChatOut, "description": "the pair's existing conversation"}},
)
async def open_direct(
    body: DirectChatCreate, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession, response: Response
) -> ChatOut:
    await write_limit(rt, uid)
    await accounts.touch_user(rt, uid, writer.username)
    out, created = await chat_rules.open_direct(rt, session, uid, body.user_id)
    response.status_code = 201 if created else 200
    return out


@chats.get("/channels", response_model=ChatPage)
async def channels(
    uid: UserId,
    rt: Runtime,
    session: DbSession,
    q: Annotated[str | None, Query(max_length=100)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ChatPage:
    return await reads.list_channels(session, uid, query=q, limit=limit, cursor=cursor)


@chats.get("/{chat_id}", response_model=ChatDetail)
async def get_chat(
    chat_id: ChatId,
    uid: UserId,
    rt: Runtime,
    session: ReadSession,
    messages: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_LIMIT,
            description=f"also the history's latest page of this many messages (0 to {MAX_LIMIT}; 0: none), "
            "as `messages` — the chat and its history in one request",
        ),
    ] = 0,
    before: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="with `messages`: the page older than this seq")
    ] = None,
) -> ChatDetail:
    """The chat, its members and the caller's read state; with `messages`, also a page of its history."""
    if before is not None and not messages:
        raise InvalidInput("before pages the history: give messages too", field="before")
    return await chat_rules.get_chat(
        session, uid, chat_id, max_members=rt.settings.max_group_members, messages=messages, before=before
    )


@chats.patch("/{chat_id}", response_model=ChatOut)
async def rename_chat(
    chat_id: ChatId, body: ChatUpdate, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession
) -> ChatOut:
    await write_limit(rt, uid)
    return await chat_rules.rename(rt, session, uid, chat_id, body.title)


@chats.post("/{chat_id}/members", response_model=list[uuid.UUID])
async def invite(
    chat_id: ChatId, body: InviteRequest, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession
) -> list[uuid.UUID]:
    await write_limit(rt, uid)
    return await chat_rules.invite(rt, session, uid, chat_id, body.user_ids)


@chats.delete("/{chat_id}/members/{member_id}", status_code=204)
async def kick(
    chat_id: ChatId, member_id: uuid.UUID, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession
) -> Response:
    await write_limit(rt, uid)
    await chat_rules.remove_member(rt, session, uid, chat_id, member_id)
    return Response(status_code=204)


@chats.put("/{chat_id}/members/{member_id}/role", status_code=204)
async def change_role(
    chat_id: ChatId,
    member_id: uuid.UUID,
    body: RoleChange,
    writer: WritingUser,
    uid: UserId,
    rt: Runtime,
    session: DbSession,
) -> Response:
    await write_limit(rt, uid)
    await chat_rules.set_role(rt, session, uid, chat_id, member_id, body.role)
    return Response(status_code=204)


@chats.post("/{chat_id}/leave", status_code=204)
async def leave(chat_id: ChatId, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession) -> Response:
    await chat_rules.remove_member(rt, session, uid, chat_id, uid)
    return Response(status_code=204)


@chats.post("/{chat_id}/subscribe", response_model=ChatOut)
async def subscribe(chat_id: ChatId, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession) -> ChatOut:
    await write_limit(rt, uid)
    return await chat_rules.subscribe(rt, session, uid, chat_id)


@chats.get("/{chat_id}/messages", response_model=MessagePage)
async def history(
    chat_id: ChatId,
    uid: UserId,
    rt: Runtime,
    session: ReadSession,
    before: Seq = None,
    after: Seq = None,
    limit: Limit = 50,
) -> MessagePage:
    return await reads.history(session, uid, chat_id, before=before, after=after, limit=limit)


@chats.post(
    "/{chat_id}/messages",
    response_model=MessageOut,
    status_code=201,
    responses={200: {"description": "a resend of a known client_msg_id: the original message"}},
)
async def send(
    chat_id: ChatId, body: MessageCreate, writer: WritingUser, uid: UserId, rt: Runtime, response: Response
) -> MessageOut:
    result = await sending.send_message(
        rt,
        uid,
        chat_id,
        body.body,
        reply_to=body.reply_to,
        attachments=body.attachments,
        client_msg_id=body.client_msg_id,
    )
    response.status_code = 200 if result.duplicate else 201
    return result.message


@chats.post("/{chat_id}/read", response_model=ReadOut)
async def read(
    chat_id: ChatId, body: ReadMark, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession
) -> ReadOut:
    return ReadOut(last_read_seq=await reads.mark_read(rt, session, uid, chat_id, body.seq))


@chats.post("/{chat_id}/typing", status_code=204)
async def typing(chat_id: ChatId, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession) -> Response:
    await message_rules.typing(rt, session, uid, chat_id)
    return Response(status_code=204)


# --------------------------------------------------------------------------- messages


@messages.get("/unread", response_model=UnreadOut)
async def unread(uid: UserId, session: DbSession) -> UnreadOut:
    return await reads.unread_summary(session, uid)


@messages.get("/{message_id}", response_model=MessageOut)
async def get_message(message_id: MessageId, uid: UserId, session: DbSession) -> MessageOut:
    return await reads.get_message(session, uid, message_id)


@messages.patch("/{message_id}", response_model=MessageOut)
async def edit_message(
    message_id: MessageId, body: MessageEdit, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession
) -> MessageOut:
    return await message_rules.edit_message(rt, session, uid, message_id, body.body)


@messages.delete("/{message_id}", status_code=204)
async def delete_message(
    message_id: MessageId, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession
) -> Response:
    await message_rules.delete_message(rt, session, uid, message_id)
    return Response(status_code=204)


@messages.post("/{message_id}/report", status_code=201, response_model=ReportOut)
async def report_message(
    message_id: MessageId, body: ReportCreate, writer: WritingUser, uid: UserId, rt: Runtime, session: DbSession
) -> ReportOut:
    """Report a message of one of your chats to the moderators (with its few neighbours, nothing more)."""
    return await reports.report_message(rt, session, uid, message_id, body.reason)


# --------------------------------------------------------------------------- notifications


@notes.get("", response_model=NotificationPage)
async def list_notifications(
    uid: UserId, rt: Runtime, session: DbSession, unread: bool = False, cursor: Cursor = None, limit: Limit = 50
) -> NotificationPage:
    return await notifications.list_notifications(session, uid, unread_only=unread, limit=limit, cursor=cursor)


@notes.get("/unread-count", response_model=UnreadCount)
async def unread_notifications(uid: UserId, session: DbSession) -> UnreadCount:
    return UnreadCount(unread=await notifications.unread_count(session, uid))


@notes.post("/read-all", response_model=Marked)
async def read_all(uid: UserId, session: DbSession) -> Marked:
    return Marked(marked=await notifications.mark_all_read(session, uid))


@notes.post("/{notification_id}/read", response_model=NotificationOut)
async def read_one(
    notification_id: Annotated[int, Path(ge=1, le=2**63 - 1)], uid: UserId, session: DbSession
) -> NotificationOut:
    return await notifications.mark_read(session, uid, notification_id)

"""Categories: a small curated list posts may name (created by moderators)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog import render
from quark_blog.models import Category
from quark_blog.schemas import CategoryCreate
from quark_sdk.errors import Conflict, InvalidInput


async def create_category(session: AsyncSession, body: CategoryCreate) -> Category:
    name = render.clean_plain(body.name)
    if not name:
        raise InvalidInput("name is empty", field="name")
    try:
        async with session.begin():
            if await session.get(Category, body.slug) is not None:
                raise Conflict(f"category {body.slug!r} exists")
            category = Category(
                slug=body.slug, name=name, description=render.clean_plain(body.description), post_count=0
            )
            session.add(category)
    except IntegrityError:  # created concurrently by another request
        raise Conflict(f"category {body.slug!r} exists") from None
    return category

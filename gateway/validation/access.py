"""Who may use site validation: administrators, logged in as users (API keys refused)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gateway.deps import StreamPrincipal
from gateway.models import User
from gateway.routes.admin import AdminDep, get_admin
from shared.errors import Forbidden


async def get_stream_admin(principal: StreamPrincipal) -> User:
    """The admin opening an event stream (read through a session closed before it starts)."""
    if principal.api_key is not None:
        raise Forbidden("API keys may not call this route; log in as a user.")
    return await get_admin(principal.user)


StreamAdminDep = Annotated[User, Depends(get_stream_admin)]

__all__ = ["AdminDep", "StreamAdminDep"]

"""The tester's audio: a member's browser posts a recording or file to transcribe, or text to
speak, and gets the API's own answer back.

Direct calls, not Celery jobs over the socket as chat columns are: audio is not streamed token
by token to several columns, and a 25 MB upload belongs in an HTTP body rather than in a Redis
message. The calls go through the same serving code as /v1/audio (the same checks, hold,
settlement and errors), with a CallContext marked `is_tester` and no API key, so they are billed
to the organization like API calls and marked as tester traffic in usage. The page is
same-origin: the session and its CSRF token are the credentials.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.db import OperationalError as DatabaseOperationalError
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.http import require_POST

from apps.accounts.models import Membership
from apps.accounts.throttle import Throttle
from apps.gateway.audio_views import speech_response, transcript_response, transcription_form_read
from apps.gateway.endpoint import new_request_id
from apps.gateway.serving import audio, transcription
from apps.gateway.serving.common import CallContext
from apps.protocol import errors
from apps.protocol.audio import SpeechRequest
from apps.protocol.openai import parse_body

logger = logging.getLogger(__name__)

# Tester calls carry no API key, so the per-key request limit does not apply: this one does.
_AUDIO_CALLS_PER_MINUTE = Throttle("tester-audio", limit=30, window_s=60)


def _tester_call(view: Callable[[HttpRequest, CallContext], Awaitable[HttpResponseBase]]) -> Any:
    """A signed-in member's call for their organization, answered in OpenAI's error envelope."""

    @require_POST
    @functools.wraps(view)
    async def wrapper(request: HttpRequest, organization_id: int) -> HttpResponseBase:
        request_id = new_request_id()
        try:
            ctx = await _member_context(request, organization_id, request_id=request_id)
            response = await view(request, ctx)
        except errors.APIError as error:
            response = error.response()
        except (DatabaseOperationalError, redis.ConnectionError, redis.TimeoutError):
            logger.warning("backend unavailable in the tester's %s", request.path, exc_info=True)
            response = errors.service_unavailable(
                "The server is busy; try again shortly.", retry_after_s=2
            ).response()
        except Exception:
            logger.exception("unhandled error in the tester's %s", request.path)
            response = errors.internal_error().response()
        response["x-request-id"] = request_id
        return response

    return wrapper


async def _member_context(
    request: HttpRequest, organization_id: int, *, request_id: str
) -> CallContext:
    user = await request.auser()
    if not user.is_authenticated:
        raise errors.APIError("Sign in to use the tester.", status=401, code="unauthenticated")
    is_member = await Membership.objects.filter(
        user_id=user.pk, organization_id=organization_id
    ).aexists()
    if not is_member:
        raise errors.APIError(
            "You are not a member of this organization.", status=403, code="not_a_member"
        )
    calls = await sync_to_async(_AUDIO_CALLS_PER_MINUTE.hit)(str(user.pk))
    if calls > _AUDIO_CALLS_PER_MINUTE.limit:
        raise errors.rate_limit_exceeded(
            "Too many audio calls from the tester: wait a minute.",
            type="requests",
            headers={"Retry-After": str(_AUDIO_CALLS_PER_MINUTE.window_s)},
        )
    return CallContext(
        request_id=request_id, organization_id=organization_id, api_key_id=None, is_tester=True
    )


@_tester_call
async def transcription_create(request: HttpRequest, ctx: CallContext) -> HttpResponseBase:
    body, upload = await transcription_form_read(request)
    transcript = await transcription.transcribe(body, upload, ctx, translate=False)
    return transcript_response(transcript, body)


@_tester_call
async def speech_create(request: HttpRequest, ctx: CallContext) -> HttpResponseBase:
    body = parse_body(request.body, SpeechRequest, content_type=request.content_type)
    return speech_response(await audio.speak(body, ctx))

"""An organization without credit gets nothing decoded: the upload is refused before the work."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from apps.billing.ledger import credit_adjust
from apps.billing.models import CreditHold
from apps.gateway.serving import transcription
from apps.gateway.serving.common import CallContext
from apps.protocol.audio import AudioUpload, TranscriptionRequest
from apps.protocol.errors import APIError
from apps.providers.engine_client import EngineClient
from tests.billing.helpers import new_request_id

pytestmark = pytest.mark.django_db(transaction=True)


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("the upload was decoded for an organization without credit")


@pytest.mark.parametrize("translate", [False, True])
async def test_no_credit_means_no_upload_is_decoded(organization, monkeypatch, translate):
    await sync_to_async(credit_adjust)(
        organization=organization, amount_micros=-5_000_000, description="test: empty"
    )
    monkeypatch.setattr(EngineClient, "probe_audio", _must_not_run)
    ctx = CallContext(new_request_id(), organization_id=organization.pk, api_key_id=None)
    request = TranscriptionRequest(model="plugsky-whisper-base")

    with pytest.raises(APIError) as refusal:
        upload = AudioUpload(b"RIFF....WAVE")
        await transcription.transcribe(request, upload, ctx, translate=translate)

    assert (refusal.value.status, refusal.value.code) == (429, "insufficient_quota")
    assert not await CreditHold.objects.aexists()

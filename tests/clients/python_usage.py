"""An integrator's script on the client that openapi-python-client generates from openapi.json
(package ``irmi_client``): sign up, log in, upload a chest X-ray, read the result and its
heatmap, and be told why a non-image is refused. It runs in the generator's own environment
(tests/clients/test_generated_clients.py), never the project's; it prints one JSON line.

    python tests/clients/python_usage.py BASE_URL EMAIL PASSWORD XRAY
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from irmi_client import AuthenticatedClient, Client
from irmi_client.api.auth import log_in, sign_up
from irmi_client.api.studies import get_study, get_study_heatmap, upload_chest_study
from irmi_client.models import (
    BodyUploadChestStudy,
    ErrorBodyCode,
    ErrorEnvelope,
    LoginRequest,
    SignupRequest,
    StudyDetail,
    TokenPair,
    UserPublic,
)
from irmi_client.types import File


def main(base_url: str, email: str, password: str, xray: Path) -> dict[str, object]:
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    user = sign_up.sync(
        client=anonymous,
        body=SignupRequest(email=email, password=password, full_name="Ada Integrator"),
    )
    assert isinstance(user, UserPublic), user
    tokens = log_in.sync(client=anonymous, body=LoginRequest(email=email, password=password))
    assert isinstance(tokens, TokenPair), tokens
    client = AuthenticatedClient(
        base_url=base_url, token=tokens.access_token, raise_on_unexpected_status=True
    )

    with xray.open("rb") as fh:
        upload = BodyUploadChestStudy(file=File(payload=fh, file_name=xray.name))
        created = upload_chest_study.sync(client=client, body=upload)
    assert isinstance(created, StudyDetail), created
    study = get_study.sync(client=client, study_id=created.id)
    assert isinstance(study, StudyDetail), study
    result = study.chest_result
    assert result is not None and result.heatmap is not None, study
    name = result.heatmap.url.rstrip("/").rsplit("/", 1)[-1]
    heatmap = get_study_heatmap.sync(client=client, study_id=study.id, name=name)
    assert isinstance(heatmap, File), heatmap
    png = heatmap.payload.read()

    text = BodyUploadChestStudy(file=File(payload=io.BytesIO(b"not an image"), file_name="a.txt"))
    refused = upload_chest_study.sync(client=client, body=text)
    assert isinstance(refused, ErrorEnvelope), refused
    assert isinstance(refused.error.code, ErrorBodyCode)
    return {
        "study_id": study.id,
        "status": str(study.status),
        "category": str(result.effective.category),
        "score": result.score,
        "models": [m.name for m in result.models],
        "heatmap_url": result.heatmap.url,
        "heatmap_png": png[:8] == b"\x89PNG\r\n\x1a\n",
        "heatmap_bytes": len(png),
        "refused_code": refused.error.code.value,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))))

"""The API process never imports torch (docs/architecture.md, "Layers"): checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import io, json, sys
    from PIL import Image
    from fastapi.testclient import TestClient

    import api.app
    from core.db.migrate import upgrade
    from core.db.session import make_session_factory
    from core.db.users import create_user
    from core.settings import Settings

    settings = Settings()
    upgrade(database_url=settings.database_url)
    with make_session_factory(settings.database_url)() as session:
        key = create_user(session, name="alice", pepper=settings.pepper).key
        session.commit()
    app = api.app.app  # built from the environment, with the real outbox dispatcher
    headers = {"Authorization": f"Bearer {key}"}
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="PNG")
    statuses = []
    with TestClient(app) as client:
        statuses.append(client.get("/readyz").status_code)
        statuses.append(client.post(
            "/v1/concepts", headers=headers, data={"name": "dog"},
            files=[("images", ("a.png", buffer.getvalue(), "image/png"))],
        ).status_code)
        statuses.append(client.post("/v1/generate", headers=headers, json={"prompt": "a dog"}).status_code)
        statuses.append(client.get("/v1/adapters", headers=headers).status_code)
        statuses.append(client.get("/openapi.json").status_code)
    banned = ("torch", "diffusers", "transformers", "peft")
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in banned)
    print(json.dumps({"statuses": statuses, "heavy": heavy}))
    """
)


def test_api_process_does_not_import_torch(tmp_path: Path) -> None:
    env = {"MNEMO_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200, 202, 202, 200, 200]
    assert result["heavy"] == []

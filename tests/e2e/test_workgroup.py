"""Issue 10: the README's env-only example (env vars and Docker secrets, no settings
file) runs as it stands, with compose, and is a working mail server."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx

from tests.e2e.appliance import message
from tests.e2e.compose import REPO, Project

MARK = "<!-- tests/e2e/test_workgroup.py runs this block as it stands -->"
ANNA = ("anna@example.org", "anna-pw-" + secrets.token_hex(4))
BEN = ("ben@example.org", "ben-pw-" + secrets.token_hex(4))


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    after = text.split(MARK, 1)[1]
    m = re.match(r"\s*```yaml\n(.*?)\n```", after, re.S)
    assert m, "the example block after the marker is gone"
    return m.group(1) + "\n"


def test_the_readme_env_only_example_works(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(readme_example())
    token = secrets.token_hex(16)
    (tmp_path / "secrets").mkdir()
    for name, value in (("anna", ANNA[1]), ("ben", BEN[1]), ("api_token", token)):
        (tmp_path / "secrets" / name).write_text(value + "\n")
    empty = tmp_path / "no-settings"  # Project mounts nothing of it: the example has no /config
    proj = Project(empty, compose_file=tmp_path / "compose.yaml")
    try:
        proj.compose("up", "-d", "--no-build")
        app = proj.appliance()
        assert app.exec("test", "-e", "/config/settings.yaml")[0] != 0  # env only
        smtp = app.smtp(587, login=ANNA)
        mid, text = message(ANNA[0], "info@example.org", "to the office alias")
        smtp.sendmail(ANNA[0], ["info@example.org"], text)
        smtp.quit()
        app.wait_delivered(*ANNA, mid)
        app.wait_delivered(*BEN, mid)
        # the admin API takes the token from its secret file, and only that token
        with httpx.Client(base_url=f"http://127.0.0.1:{proj.ports[8080]}", timeout=30) as api:
            assert (
                api.get("/users", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            )
            wrong = api.get("/users", headers={"Authorization": f"Bearer {'x' * 32}"})
            assert wrong.status_code in (401, 403)
        assert ANNA[1] not in app.logs() and token not in app.logs()
    finally:
        proj.down()

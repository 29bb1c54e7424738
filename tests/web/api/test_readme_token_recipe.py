"""The README's curl recipe for a first token, run as written (bash, curl, jq) against a real server.

Run twice it must make two working tokens (it used to fail silently the second time: a 409 for the
same name, hidden by ``curl -sf``); a refusal must be said, not swallowed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from fogmachine.services.users import create_user
from tests.web.pages.conftest import PASSWORD, password_hash

README = Path(__file__).resolve().parents[3] / "README"


def recipe() -> str:
    """The README's lines from "# Create a token" to the one that sets AUTH, unindented."""
    text = README.read_text()
    block = re.search(r"^ {4}# Create a token.*?AUTH=\"Authorization: Bearer \$TOKEN\"\n", text, re.S | re.M)
    assert block, "the README has no token recipe"
    return "\n".join(line[4:] for line in block.group(0).splitlines())


async def run(script: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec("bash", "-c", script, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def server(make_config, start_server):
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: the README's recipe needs it (apt-get install {tool})")
    srv = await start_server(make_config())
    await srv.ctx.db.run(create_user, "alice", PASSWORD, password_hash=password_hash())
    return srv


async def test_the_readme_recipe_makes_a_working_token_every_time(server):
    script = f"FM={server.base_url}\n" + recipe().replace("-u alice ", f"-u 'alice:{PASSWORD}' ")
    check = '\n[ -n "$AUTH" ] && curl -sS -H "$AUTH" $FM/api/v1/users/me | jq -r .username\n'
    first = await run(script + check)
    second = await run(script + check)
    assert first[:2] == (0, "alice\n") and second[:2] == (0, "alice\n"), (first, second)
    listed = await run(script + '\ncurl -sS -H "$AUTH" $FM/api/v1/tokens | jq -r ".tokens | length"')
    assert listed[1] == "3\n", listed


async def test_the_recipe_says_why_it_was_refused(server):
    fixed = re.sub(r'\\"laptop [^"]*\\"', r'\\"laptop\\"', recipe())
    assert fixed != recipe()
    script = f"FM={server.base_url}\n" + fixed.replace("-u alice ", f"-u 'alice:{PASSWORD}' ")
    assert (await run(script))[0] == 0
    code, out, err = await run(script + '\necho "AUTH=$AUTH"')
    assert code == 0 and out == "AUTH=\n" and "you already have an active token named 'laptop'" in err
    code, out, err = await run(script.replace(PASSWORD, "wrong password") + '\necho "AUTH=$AUTH"')
    assert out == "AUTH=\n" and err.strip(), err

"""The workspace rules as a mixin: composed with different JupyterHub spawners (chosen by
``hub_spawner_class``), each refuses a non-member before anything starts and gives members
the project's environment."""

from __future__ import annotations

import asyncio
import getpass
import types

import pytest
from jupyterhub.objects import Hub
from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, Spawner
from tornado import web
from traitlets.config import Config

from loopml.db import Database, migrate
from loopml.errors import InvalidInput
from loopml.hub_config.config import configure
from loopml.hub_config.spawner import LoopmlSpawnerMixin, ProjectSpawner, spawner_base, spawner_class
from loopml.projects import ProjectCreate, ProjectService
from loopml.settings import load_settings


class ContainerSpawner(Spawner):
    """Stands in for KubeSpawner: a spawner that is no local process."""

    started = False

    async def start(self):
        self.started = True
        return ("10.0.0.9", 8888)

    async def stop(self, now=False):
        self.started = False

    async def poll(self):
        return None if self.started else 0


MEMBER = getpass.getuser()  # LocalProcessSpawner runs servers as the hub user's OS user


class HubUser:
    admin, url, groups = False, "/user/x/", []

    def __init__(self, name: str) -> None:
        self.name = name
        self.spawners = {}


@pytest.fixture
def database_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'loopml.db'}"
    db = Database(url)
    migrate(db.engine)
    ProjectService(db).create(ProjectCreate(name="demo", members=[MEMBER]))
    return url


def workspace(cls: type[Spawner], user: str, database_url: str) -> Spawner:
    return cls(user=HubUser(user), orm_spawner=types.SimpleNamespace(name="demo", server=None), hub=Hub(), api_token="workspace-token",
               oauth_client_id=f"jupyterhub-user-{user}", projects_dir="/data/projects", database_url=database_url,
               platform_url="http://127.0.0.1:1/services/loopml", data_dir="/data", isolation="off")


BASES = [pytest.param(SimpleLocalProcessSpawner, id="simple"), pytest.param(LocalProcessSpawner, id="localprocess"),
         pytest.param(ContainerSpawner, id="container")]


@pytest.mark.parametrize("base", BASES)
def test_the_mixin_composes_with_the_spawner_and_refuses_a_non_member(base, database_url):
    cls = spawner_class(base)
    assert issubclass(cls, LoopmlSpawnerMixin) and issubclass(cls, base)
    with pytest.raises(web.HTTPError) as refused:
        asyncio.run(workspace(cls, "mallory", database_url).start())
    assert refused.value.status_code == 403 and "not a member of project 'demo'" in refused.value.log_message


@pytest.mark.parametrize("base", BASES)
def test_a_members_workspace_gets_the_projects_environment(base, database_url):
    env = workspace(spawner_class(base), MEMBER, database_url).get_env()
    assert (env["LOOPML_PROJECT"], env["LOOPML_TOKEN"]) == ("demo", "workspace-token")
    assert env["LOOPML_URL"] == "http://127.0.0.1:1/services/loopml"


def test_a_member_starts_a_non_local_spawner_unsandboxed_in_its_own_directory(database_url):
    spawner = workspace(spawner_class(ContainerSpawner), MEMBER, database_url)
    spawner.isolation, spawner.notebook_dir = "bwrap", "/srv/project"
    assert not spawner.sandboxed
    assert asyncio.run(spawner.start()) == ("10.0.0.9", 8888) and spawner.started
    assert spawner.notebook_dir == "/srv/project"


def test_the_default_spawner_is_the_project_spawners_base():
    assert spawner_base("simple") is SimpleLocalProcessSpawner
    assert spawner_base("jupyterhub.spawner.LocalProcessSpawner") is LocalProcessSpawner
    assert spawner_base("jupyterhub.spawner:LocalProcessSpawner") is LocalProcessSpawner
    assert spawner_class(ProjectSpawner) is ProjectSpawner
    assert spawner_class(SimpleLocalProcessSpawner) is spawner_class(SimpleLocalProcessSpawner)


@pytest.mark.parametrize("name, says", [
    ("nope", "use one of"),
    ("no_such_module.Spawner", "cannot be imported"),
    ("loopml.settings.Settings", "is not a JupyterHub Spawner"),
])
def test_a_spawner_name_that_names_no_spawner_is_refused_naming_the_setting(name, says):
    with pytest.raises(InvalidInput, match=says) as refused:
        spawner_base(name)
    assert refused.value.details.get("field") == "hub_spawner_class"


def test_the_hub_config_uses_the_spawner_the_setting_names(tmp_path):
    c = Config()
    configure(c, load_settings(data_dir=tmp_path, hub_spawner_class="localprocess",
                               oauth={"client_id": "hub", "client_secret": "x"}))
    cls = c.JupyterHub.spawner_class
    assert issubclass(cls, LoopmlSpawnerMixin) and issubclass(cls, LocalProcessSpawner)
    assert not issubclass(cls, SimpleLocalProcessSpawner)
    assert c.LoopmlSpawnerMixin.projects_dir == str(tmp_path.resolve() / "projects")

"""Fixtures of the AWS tests: moto's server, a boto3 client on it, cluster specs, the stand-in."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aws.cloud import IMAGE, REGION, StandIn, ec2_client, moto_server
from tests.deploy.deployment import build_double_tarball
from tests.labhosts import LabHosts, free_subnet


@pytest.fixture(scope="session")
def mongodb_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mongod double as MongoDB's tarball (or WAP_TEST_MONGODB_TARBALL's), built once."""
    given = os.environ.get("WAP_TEST_MONGODB_TARBALL")
    if given:
        return Path(given)
    return build_double_tarball(tmp_path_factory.mktemp("double"))


@pytest.fixture
def moto() -> Iterator[str]:
    """A fresh moto server (its endpoint URL); killed at the end."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def ec2(moto: str) -> Any:
    return ec2_client(moto)


@pytest.fixture
def vpc_cidr() -> str:
    """A /16 no route of this machine uses, so that lab hosts can take the instances' addresses."""
    return free_subnet(base="10.64.0.0/10", prefix=16, skip=0)


@pytest.fixture
def make_spec(vpc_cidr: str) -> Callable[..., dict[str, Any]]:
    def make(**fields: Any) -> dict[str, Any]:
        spec = {
            "project": "acme",
            "cluster": "orders",
            "region": REGION,
            "zones": 3,
            "topology": "replicaset",
            "members": 3,
            "mongodb_version": "7.0.14",
            "instance_type": "m6i.large",
            "image": IMAGE,
            "ssh_user": "root",  # the lab hosts' login
            "vpc_cidr": vpc_cidr,
            "platform_cidr": "10.250.0.0/24",
            "app_cidrs": ["10.251.0.0/16", "10.252.0.0/16"],
        }
        spec.update(fields)
        return spec

    return make


@pytest.fixture
def stand_in(
    make_lab: Callable[..., LabHosts], ec2: Any
) -> Iterator[Callable[[dict[str, str]], StandIn]]:
    """Start a stand-in for the instances tagged so; lab hosts of it are removed at the end."""
    started: list[StandIn] = []

    def start(tags: dict[str, str]) -> StandIn:
        lab = make_lab(1).lab  # a lab needs one host of its own; the instances join it
        standin = StandIn(lab, ec2, tags)
        standin.start()
        started.append(standin)
        return standin

    yield start
    for standin in started:
        standin.stop()

"""Microsoft access for tests: the real MSAL and httpx pointed at a FakeGraph, retries without sleeping."""

from __future__ import annotations

from daemon.config.sections import MicrosoftConfig
from daemon.microsoft.access import MicrosoftAccess
from tests.support.graph_fake import CLIENT_ID, TENANT, FakeGraph


def config_for(fake: FakeGraph, **more: object) -> MicrosoftConfig:
    return MicrosoftConfig.model_validate(
        {
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "authority": fake.authority,
            "graph_endpoint": fake.graph,
            "ca_file": fake.ca.ca_file,
            **more,
        }
    )


def access_for(fake: FakeGraph, slept: list[float] | None = None, **more: object) -> MicrosoftAccess:
    """Access to the fake; the pauses between retries are recorded in `slept`, not slept."""
    pauses = slept if slept is not None else []
    return MicrosoftAccess(config_for(fake, **more), sleep=pauses.append)

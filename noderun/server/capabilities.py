"""``GET /api/sdk/v1/capabilities`` and ``get_capabilities``: what this server supports,
as NodeTool's ``SdkCapabilitiesResponse``.

The SDK negotiates against it: a call whose execution options are not all listed is
refused by the SDK before it is sent. So only what works is listed, and the limits are
this server's settings.
"""

from __future__ import annotations

import datetime

from noderun.server.answers import (
    Capabilities,
    ExecutionDefaults,
    Limits,
    Profiles,
    SupportedOptions,
)
from noderun.server.settings import Settings

__all__ = ["MAX_RPC_BATCH", "capabilities"]

#: Most workflow ids one ``get_workflow_interfaces`` may name (NodeTool's bound).
MAX_RPC_BATCH = 100


def capabilities(settings: Settings, registry_revision: int, version: str) -> Capabilities:
    """What this server supports, as ``SdkCapabilitiesResponse``. The SDK refuses a
    call whose execution options are not all listed here, so only what works is."""
    durable = settings.store.lower() != "none"
    return Capabilities(
        protocol_version="1",
        nodetool_version=f"noderun {version}",
        server_time=datetime.datetime.now(datetime.UTC).isoformat(),
        supported_encodings=["messagepack", "json-text"],
        default_encoding="messagepack",
        profiles=Profiles(
            discovery="available",
            execution="available",
            lifecycle="available",
            workflow_interface="available",
            temporary_asset_upload="available",
            models="unavailable",
        ),
        registry_revision=registry_revision,
        python_bridge="disabled",
        auth_modes=["bearer"] if settings.tokens else ["trusted_local"],
        asset_uri_schemes=["asset"],
        execution_options=SupportedOptions(
            persistence=["session", "job"] if durable else ["session"],
            event_detail=["full", "outputs", "terminal"],
            # No node here writes assets, so both policies behave the same.
            asset_persistence=["auto", "temporary"],
            defaults=ExecutionDefaults(
                persistence="session", event_detail="full", asset_persistence="auto"
            ),
        ),
        limits=Limits(
            max_rpc_batch=MAX_RPC_BATCH,
            max_inline_bytes=settings.max_frame_bytes,
            max_frame_bytes=settings.max_frame_bytes,
            max_upload_bytes=settings.max_asset_bytes,
            max_queued_jobs=settings.max_active_runs,
            max_connections=settings.max_connections,
            max_runs_per_connection=settings.max_runs_per_connection,
            max_runs_per_user=settings.max_runs_per_user,
            max_queued_runs_per_user=settings.max_queued_runs_per_user,
            max_job_event_replay=settings.replay_limit,
            # The one server-side wait a client's run is subject to: how long it
            # goes on with no client attached.
            request_timeout_seconds=settings.detach_grace,
            # Not in NodeTool's SdkCapabilitiesResponse (extra keys are ignored):
            # PROTOCOL.md §7's nodes per graph and run timeout (0 = none).
            max_graph_nodes=settings.max_graph_nodes,
            run_timeout_seconds=settings.run_timeout,
        ),
    )

"""The runtime/persistence contract: its enums match the wire, stores' errors derive
from its bases, and a status read back as a plain string still compares."""

from __future__ import annotations

import typing

import msgspec

from noderun import contract
from noderun.contract import TERMINAL_STATUSES, Refusal, RunRecord, RunStatus
from noderun.persistence import errors
from noderun.protocol.server import JobStatus, JobUpdate


def test_run_statuses_are_exactly_the_wire_statuses() -> None:
    assert {status.value for status in RunStatus} == set(typing.get_args(JobStatus))
    assert {"completed", "failed", "cancelled"} == TERMINAL_STATUSES


def test_a_status_goes_on_the_wire_as_its_string() -> None:
    as_enum = JobUpdate(job_id="j", workflow_id="w", status=RunStatus.CANCELLED)  # type: ignore[arg-type]
    as_text = JobUpdate(job_id="j", workflow_id="w", status="cancelled")
    assert msgspec.msgpack.encode(as_enum) == msgspec.msgpack.encode(as_text)
    assert msgspec.json.encode(as_enum) == msgspec.json.encode(as_text)


def test_refusal_codes_are_the_error_codes_clients_know() -> None:
    assert {code.value for code in Refusal} == {
        "invalid_job_id",
        "job_already_running",
        "server_busy",
        "too_many_runs",
        "store_unavailable",
    }


def test_a_record_read_back_with_a_plain_string_status_is_still_finished() -> None:
    record = RunRecord(job_id="j", workflow_id="w", user_id="u", status="failed")
    assert record.finished and record.status == RunStatus.FAILED
    assert not RunRecord(job_id="j", workflow_id="w", user_id="u", status="running").finished


def test_store_errors_derive_from_the_contract_bases() -> None:
    assert errors.RunExists is contract.RunExists
    assert errors.StoreError is contract.StoreError
    assert errors.StoreUnavailable is contract.StoreUnavailable
    for refined in (
        errors.StoreConfigError,
        errors.SchemaTooNew,
        errors.WriteRejected,
        errors.StoreFull,
    ):
        assert issubclass(refined, contract.StoreError)
    assert issubclass(errors.StoreFull, contract.StoreUnavailable)
    exists = contract.RunExists("j", "running")
    assert (exists.job_id, exists.status) == ("j", "running") and "'j'" in str(exists)

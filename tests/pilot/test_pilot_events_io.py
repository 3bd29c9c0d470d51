"""Event envelopes interoperate with oms-mqclient; input/output files by extension (JSON, text, bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mqclient.broker_client_interface import Message

from pilot.errors import TaskInputError, TaskOutputError
from pilot.events_io import ENCODING_HEADER, Event, decode_event, encode_event, read_outfile, write_infile


@pytest.mark.parametrize("data", ["text", {"a": [1, 2.5, None]}, 7, ["x"]])
def test_envelopes_round_trip_with_oms_mqclient(data: object) -> None:
    assert decode_event(Message.serialize(data)).data == data  # what mqclient sends, we read
    assert Message(1, encode_event(Event(data))).data == data  # what we send, mqclient reads


def test_non_envelope_body_is_an_input_error() -> None:
    with pytest.raises(TaskInputError, match="not an oms-mqclient envelope"):
        decode_event(b"plain bytes")


def test_json_files(tmp_path: Path) -> None:
    infile = tmp_path / "in.json"
    write_infile(infile, Event({"k": [1, 2]}))
    assert infile.read_text() == '{"k": [1, 2]}'
    outfile = tmp_path / "out.json"
    outfile.write_text('{"r": 3}')
    assert read_outfile(outfile) == Event({"r": 3})
    outfile.write_text("{not json")
    with pytest.raises(TaskOutputError, match="not valid JSON"):
        read_outfile(outfile)


def test_text_files_and_missing_output(tmp_path: Path) -> None:
    infile = tmp_path / "in.in"
    write_infile(infile, Event("héllo\n"))
    assert infile.read_text() == "héllo\n"
    assert read_outfile(tmp_path / "none.out") is None
    with pytest.raises(TaskInputError, match=r"use EWMS_PILOT_INFILE_EXT=\.json"):
        write_infile(infile, Event({"not": "text"}))


def test_binary_output_travels_as_base64_and_comes_back_as_bytes(tmp_path: Path) -> None:
    raw = bytes(range(256))
    outfile = tmp_path / "out.out"
    outfile.write_bytes(raw)
    event = read_outfile(outfile)
    assert event is not None and event.headers == {ENCODING_HEADER: "base64"}
    forwarded = decode_event(encode_event(event))  # e.g. the next task's input
    infile = tmp_path / "next.in"
    write_infile(infile, forwarded)
    assert infile.read_bytes() == raw

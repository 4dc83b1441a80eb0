"""The CRI log format and the attach framing, without any process."""

import pytest

from engine.containers import logs
from engine.containers.attach import MAX_FRAME, Frame, FrameDecoder, encode, encode_data
from jobs.errors import ProtocolError


def test_log_keeps_lines_and_partial_tails(tmp_path):
    path = tmp_path / "ctr.log"
    writer = logs.LogWriter(path, clock=lambda: "T")
    writer.write("stdout", b"one\ntwo\nhalf")
    writer.write("stderr", b"err line\n")
    writer.write("stdout", b" done\n")
    writer.close()
    assert path.read_bytes().splitlines()[0] == b"T stdout F one"
    out = b"".join(logs.render(r, False) for r in logs.read(path))
    assert out == b"one\ntwo\nhalferr line\n done\n"
    assert [r.data for r in logs.read(path, tail=2)] == [b"err line", b" done"]
    assert logs.render(next(logs.read(path)), True) == b"T one\n"


def test_follow_stops_when_the_writer_is_gone(tmp_path):
    path = tmp_path / "ctr.log"
    writer = logs.LogWriter(path, clock=lambda: "T")
    writer.write("stdout", b"a\n")
    calls = []

    def alive():
        calls.append(1)
        if len(calls) == 1:
            writer.write("stdout", b"b\n")
            return True
        return False

    assert [r.data for r in logs.read(path, follow=alive)] == [b"a", b"b"]


def test_frames_split_anywhere_decode_whole():
    data = encode(Frame.HELLO, {"stdin": True}) + encode_data(Frame.STDIN, b"x" * 10) + encode(Frame.STDIN_EOF)
    decoder = FrameDecoder()
    got = []
    for i in range(len(data)):
        got += decoder.feed(data[i:i + 1])
    assert [m.kind for m in got] == [Frame.HELLO, Frame.STDIN, Frame.STDIN_EOF]
    assert got[0].json() == {"stdin": True} and got[1].data == b"x" * 10


def test_oversized_or_unknown_frames_are_refused():
    with pytest.raises(ProtocolError, match="over the"):
        FrameDecoder().feed(bytes([2]) + (MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="unknown attach frame type 99"):
        FrameDecoder().feed(bytes([99, 0, 0, 0, 0]))


def test_big_output_is_split_into_frames():
    data = encode_data(Frame.STDOUT, b"y" * (MAX_FRAME + 5))
    messages = FrameDecoder().feed(data)
    assert len(messages) == 2 and sum(len(m.data) for m in messages) == MAX_FRAME + 5

"""The model's audio API: what emit(audio=) and emit_audio() accept and refuse, where the
sound lands on the session clock, and the clients' sound through audio_inputs()."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from reactor import AudioChunk, AudioError, Session, VideoModel
from reactor.model.audio import RESYNC_S, AudioTimeline, to_pcm
from reactor.testing import ModelRunner

W, H, FPS = 8, 4, 25
Step = Callable[[Session], object]


class Script(VideoModel):
    """Runs its steps, in order, with the session; a step returning keeps the session on."""

    def __init__(self, *steps: Step) -> None:
        self.steps = steps
        self.sessions: list[Session] = []

    def start_session(self, session: Session) -> None:
        self.sessions.append(session)
        for step in self.steps:
            step(session)


def frame(session: Session) -> np.ndarray:
    return np.zeros((session.height, session.width, 3), np.uint8)


def speak(*steps: Step, rate: int = 16000, channels: int = 1,
          frames: int | None = None) -> tuple[ModelRunner, Session]:
    model = Script(*steps)
    runner = ModelRunner(model, width=W, height=H, fps=FPS,
                         audio={"output": True, "sample_rate": rate, "channels": channels})
    runner.run(frames=frames if frames is not None else 10_000)
    return runner, model.sessions[0]


def tone(n: int, rate: int = 16000, hz: float = 500.0, level: float = 0.5) -> np.ndarray:
    return (level * np.sin(2 * np.pi * hz * np.arange(n) / rate)).astype(np.float32)


# --- conversions -------------------------------------------------------------------------

MONO = tone(320)
STEREO = np.stack([MONO, -MONO], axis=1)
I16 = np.array([0, 16384, -16384, 32767, -32768], np.int16)


def _numpy_cases() -> list[tuple[str, int, Any, np.ndarray]]:
    return [
        ("float32 (n,)", 1, MONO, MONO[:, None]),
        ("float64 (n,)", 1, MONO.astype(np.float64), MONO[:, None]),
        ("float32 (n, 1)", 1, MONO[:, None], MONO[:, None]),
        ("float16 (n,)", 1, MONO.astype(np.float16), MONO.astype(np.float16)[:, None]),
        ("float32 (n, 2)", 2, STEREO, STEREO),
        ("float64 (n, 2) strided", 2, np.asfortranarray(STEREO.astype(np.float64)), STEREO),
        ("int16 (n,)", 1, I16, (I16 / 32768.0)[:, None]),
        ("int16 (n, 2)", 2, np.stack([I16, I16], 1), np.stack([I16, I16], 1) / 32768.0),
        ("float beyond [-1, 1] is clipped", 1, np.array([1.5, -3.0, 0.25]),
         np.array([[1.0], [-1.0], [0.25]])),
    ]


@pytest.mark.parametrize(("name", "channels", "given", "expected"), _numpy_cases(),
                         ids=[c[0] for c in _numpy_cases()])
@pytest.mark.parametrize("how", ["emit", "emit_audio"])
def test_numpy_audio_is_converted_to_float32_samples_by_channels(
    name: str, channels: int, given: Any, expected: np.ndarray, how: str
) -> None:
    def step(session: Session) -> None:
        if how == "emit":
            session.emit(frame(session), audio=given)
        else:
            session.emit_audio(given)

    runner, session = speak(step, channels=channels, frames=1)
    assert len(runner.audio_chunks) == 1
    t, pcm = runner.audio_chunks[0]
    assert t == 0.0
    assert pcm.dtype == np.float32 and pcm.shape == (len(given), channels)
    np.testing.assert_allclose(pcm, expected, atol=1e-6)
    assert session.samples_emitted == len(given) and session.audio_dropped == 0


def test_int16_full_scale_maps_onto_minus_one_to_just_under_one() -> None:
    pcm = to_pcm(np.array([-32768, 32767, 0], np.int16), 1)
    assert pcm[0, 0] == -1.0 and pcm[1, 0] == pytest.approx(32767 / 32768) and pcm[2, 0] == 0


def test_torch_tensors_of_any_dtype_the_api_takes_are_converted() -> None:
    torch = pytest.importorskip("torch")
    cases = [
        (torch.from_numpy(MONO), 1, MONO[:, None]),
        (torch.from_numpy(MONO).double(), 1, MONO[:, None]),
        (torch.from_numpy(STEREO), 2, STEREO),
        (torch.from_numpy(STEREO).t().contiguous().t(), 2, STEREO),  # non-contiguous
        (torch.from_numpy(I16), 1, (I16 / 32768.0)[:, None]),
        (torch.from_numpy(MONO).requires_grad_(), 1, MONO[:, None]),
    ]
    for given, channels, expected in cases:
        def step(session: Session, given: Any = given) -> None:
            session.emit(frame(session), audio=given)

        runner, _ = speak(step, channels=channels, frames=1)
        pcm = runner.audio_chunks[0][1]
        assert pcm.dtype == np.float32 and pcm.shape == expected.shape
        np.testing.assert_allclose(pcm, expected, atol=1e-6)


# --- refusals ----------------------------------------------------------------------------

BAD: list[tuple[str, int, Any, list[str]]] = [
    ("int32", 1, np.zeros(10, np.int32), ["dtype int32", "int16"]),
    ("uint8", 1, np.zeros(10, np.uint8), ["dtype uint8"]),
    ("bool", 1, np.zeros(10, bool), ["dtype bool"]),
    ("complex", 1, np.zeros(10, np.complex64), ["dtype complex64"]),
    ("a list", 1, [0.0, 0.1], ["found list"]),
    ("3 channels for 2", 2, np.zeros((10, 3), np.float32), ["shape (10, 3)",
                                                             "audio.channels is 2"]),
    ("stereo for mono", 1, np.zeros((10, 2), np.float32), ["shape (10, 2)",
                                                           "audio.channels is 1"]),
    ("(n,) for stereo", 2, np.zeros(10, np.float32), ["shape (10,)", "(samples, 2)"]),
    ("3-D", 1, np.zeros((2, 10, 1), np.float32), ["shape (2, 10, 1)"]),
    ("channels first", 2, np.zeros((2, 10), np.float32), ["shape (2, 10)"]),
    ("NaN", 1, np.array([0.0, np.nan, 0.1], np.float32), ["1 of 3 samples", "NaN"]),
    ("inf", 2, np.array([[np.inf, 0.0], [0.0, -np.inf]]), ["2 of 4 samples", "infinite"]),
]


@pytest.mark.parametrize(("name", "channels", "given", "words"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("how", ["emit", "emit_audio"])
def test_bad_audio_is_refused_naming_what_was_given_and_the_session_goes_on(
    name: str, channels: int, given: Any, words: list[str], how: str
) -> None:
    good = np.zeros((160, channels), np.float32)

    def bad(session: Session) -> None:
        if how == "emit":
            session.emit(frame(session), audio=given)
        else:
            session.emit_audio(given)

    def after(session: Session) -> None:
        session.emit(frame(session), audio=good)
        session.emit(frame(session))

    runner, session = speak(bad, after, channels=channels, frames=3)
    what = "emit(audio=...)" if how == "emit" else "emit_audio()"
    assert session.audio_dropped == 1
    assert session.last_audio_error is not None
    assert session.last_audio_error.startswith(what)
    for word in words:
        assert word in session.last_audio_error
    # The frames went out, and so did the good sound after the refused one.
    assert session.frames_emitted == (3 if how == "emit" else 2)
    assert [len(pcm) for _, pcm in runner.audio_chunks] == [160]
    assert session.samples_emitted == 160


def test_a_refused_chunk_is_logged_once_while_it_repeats(caplog: pytest.LogCaptureFixture) -> None:
    def step(session: Session) -> None:
        for _ in range(5):
            session.emit(frame(session), audio=np.zeros(10, np.int32))

    _, session = speak(step, frames=5)
    assert session.audio_dropped == 5
    assert len([r for r in caplog.records if "audio refused" in r.getMessage()]) == 1


@pytest.mark.parametrize("how", ["emit", "emit_audio"])
def test_sound_without_audio_output_is_an_error_naming_the_key(how: str) -> None:
    def step(session: Session) -> None:
        if how == "emit":
            session.emit(frame(session), audio=MONO)
        else:
            session.emit_audio(MONO)

    runner = ModelRunner(Script(step), width=W, height=H, fps=FPS)
    with pytest.raises(AudioError, match=r"`audio\.output: true`"):
        runner.run(frames=1)
    assert runner.audio_chunks == []


def test_reading_sound_without_audio_input_is_an_error_naming_the_key() -> None:
    def step(session: Session) -> None:
        next(session.audio_inputs())

    runner = ModelRunner(Script(step), width=W, height=H, fps=FPS, audio={"output": True})
    with pytest.raises(AudioError, match=r"`audio\.input: true`"):
        runner.run(frames=1, audio_inputs=MONO)


def test_session_attributes_follow_the_audio_section() -> None:
    _, session = speak(lambda s: None, rate=24000, channels=2, frames=1)
    assert (session.audio_output, session.audio_input) == (True, False)
    assert (session.sample_rate, session.channels) == (24000, 2)
    model = Script(lambda s: None)
    ModelRunner(model, width=W, height=H).run(frames=1)
    bare = model.sessions[0]
    assert (bare.audio_output, bare.audio_input, bare.sample_rate, bare.channels) == (
        False, False, 48000, 1)


# --- the timeline ------------------------------------------------------------------------

def test_sound_emitted_with_frames_starts_with_the_first_frame() -> None:
    rate = 16000

    def step(session: Session) -> None:
        session.emit(frame(session))
        session.emit(frame(session))
        block = np.zeros((3, H, W, 3), np.uint8)
        session.emit(block, audio=tone(3 * rate // FPS))  # frames 2..4, sound from frame 2

    runner, session = speak(step, frames=5)
    assert session.frames_emitted == 5
    t, pcm = runner.audio_chunks[0]
    assert t == pytest.approx(2 / FPS, abs=1e-9)
    start = 2 * rate // FPS
    assert not runner.audio[:start].any()
    np.testing.assert_array_equal(runner.audio[start:start + len(pcm)], pcm)


def test_chunks_continue_where_the_last_ended_whatever_their_length() -> None:
    rate = 16000
    whole = tone(rate // FPS * 4)
    # One frame each (40 ms), with sound longer and shorter than that, never falling more
    # than RESYNC_S behind the frames.
    parts = [whole[:1], whole[1:1201], whole[1201:1301], whole[1301:]]

    def step(session: Session) -> None:
        for part in parts:
            session.emit(frame(session), audio=part)

    runner, _ = speak(step, frames=4)
    assert [t for t, _ in runner.audio_chunks] == pytest.approx(
        [0, 1 / rate, 1201 / rate, 1301 / rate], abs=1e-9)
    np.testing.assert_array_equal(runner.audio[:len(whole), 0], whole)


def test_sound_that_falls_behind_its_frames_by_more_than_the_window_restarts_with_a_frame(
) -> None:
    rate = 16000

    def step(session: Session) -> None:
        session.emit(frame(session), audio=tone(16))  # 1 ms, then nothing for 3 frames
        for _ in range(3):
            session.emit(frame(session))
        session.emit(frame(session), audio=tone(16))  # frame 4: 160 ms

    runner, _ = speak(step, frames=5)
    assert [t for t, _ in runner.audio_chunks] == pytest.approx([0, 4 / FPS], abs=1e-9)
    assert not runner.audio[16:4 * rate // FPS].any()


def test_emit_audio_after_a_silence_starts_at_the_session_clock_with_silence_between() -> None:
    rate = 16000

    def step(session: Session) -> None:
        session.emit(frame(session), audio=tone(160))  # 10 ms at 0
        for _ in range(9):
            session.emit(frame(session))  # 360 ms of picture without sound
        session.emit_audio(tone(320))  # now is frame 10: 0.4 s
        session.emit_audio(tone(320, hz=700))  # continues at 0.42 s

    runner, _ = speak(step)
    times = [t for t, _ in runner.audio_chunks]
    assert times == pytest.approx([0.0, 10 / FPS, 10 / FPS + 0.02], abs=1e-9)
    at = 10 * rate // FPS
    assert not runner.audio[160:at].any()  # the gap is silence
    np.testing.assert_array_equal(runner.audio[at:at + 320, 0], tone(320))
    np.testing.assert_array_equal(runner.audio[at + 320:at + 640, 0], tone(320, hz=700))


def test_timeline_continues_within_the_resync_window_and_restarts_after_it() -> None:
    tl = AudioTimeline(48000)
    assert tl.end_ns is None
    assert tl.place(1_000_000, 480) == 1_000_000  # 10 ms from 1 ms
    assert tl.end_ns == 11_000_000
    # Emitted late, but within the window: continues seamlessly, no gap.
    assert tl.place(11_000_000 + int(RESYNC_S * 1e9) - 1, 480) == 11_000_000
    # Emitted early (the model runs ahead): still continues, never overlaps.
    assert tl.place(0, 480) == 21_000_000
    # A silence longer than the window: starts anew at its own time.
    late = 31_000_000 + int(RESYNC_S * 1e9) + 1
    assert tl.place(late, 480) == late
    assert tl.end_ns == late + 10_000_000


@pytest.mark.parametrize(("rate", "size"), [(44100, 147), (48000, 1), (44100, 1837),
                                            (24000, 7)])
def test_timeline_does_not_drift_over_many_chunks_of_fractional_duration(
    rate: int, size: int
) -> None:
    tl = AudioTimeline(rate)
    origin = 123_456_789
    count = 20_000  # 1837 samples at 44.1 kHz: 14 minutes
    total = 0
    for _ in range(count):
        start = tl.place(origin, size)  # every chunk emitted "now": all continue
        # Each start is the exact sample position, floored to the nanosecond.
        assert start == origin + total * 1_000_000_000 // rate
        total += size
    assert tl.end_ns == origin + total * 1_000_000_000 // rate
    assert abs(tl.end_ns - origin - total / rate * 1e9) < 1


def test_audio_chunk_carries_its_time_through_views() -> None:
    chunk = AudioChunk(np.ones((320, 1), np.float32), 1.25)
    assert isinstance(chunk, np.ndarray) and chunk.time == 1.25
    head, flat = chunk[:10], chunk.reshape(-1)
    assert isinstance(head, AudioChunk) and head.time == 1.25 and head.shape == (10, 1)
    assert isinstance(flat, AudioChunk) and flat.time == 1.25
    assert chunk.shape == (320, 1) and chunk.dtype == np.float32
    assert float(np.asarray(chunk).sum()) == 320.0


# --- the clients' sound ------------------------------------------------------------------

class Listener(VideoModel):
    """Reads frames and, with each, the sound that arrived (never waiting)."""

    def load(self, config: dict[str, Any]) -> None:
        self.heard: list[tuple[float | None, list[AudioChunk]]] = []

    def start_session(self, session: Session) -> None:
        for image in session.inputs():
            self.heard.append((session.input_time, list(session.audio_inputs(block=False))))
            session.emit(image)


def test_audio_inputs_come_in_20ms_chunks_with_times_that_pair_with_the_frames() -> None:
    rate = 16000
    runner = ModelRunner(Listener, width=W, height=H, fps=FPS,
                         audio={"input": True, "sample_rate": rate, "channels": 2})
    sound = np.stack([tone(rate // 2), tone(rate // 2, hz=300)], axis=1)
    runner.run(inputs=[np.zeros((H, W, 3), np.uint8)] * 20, audio_inputs=sound)
    model = runner.model
    assert isinstance(model, Listener)
    chunks = [c for _, got in model.heard for c in got]
    assert len(chunks) == 25  # 0.5 s
    assert all(c.shape == (rate // 50, 2) and c.dtype == np.float32 for c in chunks)
    assert [c.time for c in chunks] == pytest.approx([i * 0.02 for i in range(25)])
    np.testing.assert_array_equal(np.concatenate(chunks), sound)
    # Each frame got the sound up to its own time, and none from later.
    for input_time, got in model.heard:
        assert input_time is not None
        assert all(c.time <= input_time + 1e-9 for c in got)
    assert [len(got) for _, got in model.heard][:4] == [1, 2, 2, 2]
    assert model.heard[0][0] == 0.0 and model.heard[1][0] == pytest.approx(1 / FPS)


def test_audio_inputs_take_int16_and_several_arrays_and_pad_the_last_chunk() -> None:
    rate = 16000
    runner = ModelRunner(Listener, width=W, height=H, fps=FPS,
                         audio={"input": True, "sample_rate": rate})
    pcm16 = np.full(200, 16384, np.int16)
    runner.run(inputs=[np.zeros((H, W, 3), np.uint8)] * 5, audio_inputs=[pcm16, tone(300)])
    model = runner.model
    assert isinstance(model, Listener)
    chunks = [c for _, got in model.heard for c in got]
    assert len(chunks) == 2
    np.testing.assert_array_equal(chunks[0][:200, 0], np.full(200, 0.5, np.float32))
    np.testing.assert_array_equal(chunks[0][200:, 0], tone(300)[:120])
    np.testing.assert_array_equal(chunks[1][:180, 0], tone(300)[120:])
    assert not chunks[1][180:].any()


def test_wrong_audio_inputs_are_refused_naming_the_argument() -> None:
    runner = ModelRunner(Listener, width=W, height=H, audio={"input": True, "channels": 2})
    with pytest.raises(AudioError, match=r"run\(audio_inputs=\.\.\.\) \[0\].*shape \(10,\)"):
        runner.run(inputs=[np.zeros((H, W, 3), np.uint8)], audio_inputs=np.zeros(10))


def test_a_model_that_waits_for_sound_ends_when_the_sound_runs_out() -> None:
    rate = 16000

    def echo(session: Session) -> None:
        for chunk in session.audio_inputs():
            session.emit_audio(chunk * 0.5)

    model = Script(echo)
    runner = ModelRunner(model, width=W, height=H, fps=FPS,
                         audio={"input": True, "output": True, "sample_rate": rate})
    sound = tone(rate // 10, level=0.8)
    runner.run(audio_inputs=sound)
    assert len(runner.audio_chunks) == 5
    np.testing.assert_allclose(runner.audio[:len(sound), 0], sound * 0.5, atol=1e-7)


def test_a_model_that_waits_for_sound_that_the_test_never_gives_is_told_so() -> None:
    model = Script(lambda s: next(s.audio_inputs()))
    runner = ModelRunner(model, width=W, height=H, audio={"input": True})
    with pytest.raises(ValueError, match=r"run\(audio_inputs=\.\.\.\)"):
        runner.run(frames=1)
